"""Benchmark: emit throughput with many sessions from several client processes, 1 node vs a 3-master cluster.

Run: ``.venv/bin/python benchmarks/scale.py [--processes 3 --sessions 60 --events 3000 --concurrency 32]``.

For each topology (one redis-server; a local Redis Cluster of 3 masters without replicas, started from the same
binary) and each client (huddle's ``emit_event``; a raw redis-py baseline that EVALSHAs the identical
``common.lua + emit.lua`` text with prebuilt arguments), ``--processes`` OS processes each emit ``--events``
events spread round-robin over their share of ``--sessions`` sessions, ``--concurrency`` calls in flight per
process. A barrier starts all processes together; throughput = all events / wall time of the slowest process.
Also printed: how the sessions are spread over the cluster's masters.

Everything runs on this machine: client processes and Redis servers share its cores, so a cluster cannot show
its scale-out here; the numbers say what this machine does, not what separate hosts would.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import queue
import time
import uuid
from typing import Any

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.connection import create_client
from huddle.backend.topology import EmbeddedCluster
from huddle.core.keys import KeySpace
from huddle.core.scripts import script_source

EVENT: dict[str, Any] = {
    "type": "modified",
    "changeInfo": {"elementType": "function", "entityIds": ["src/auth/login.ts"], "operation": "updated"},
    "data": {"lines_changed": 42},
}


async def _huddle_worker(
    config: SessionManagerConfig, sids: list[str], agent: str, events: int, conc: int
) -> None:
    async with SessionManager(config) as manager:
        queue = iter(range(events))

        async def lane() -> None:
            for i in queue:
                await manager.emit_event(sids[i % len(sids)], EVENT, agent)

        await asyncio.gather(*(lane() for _ in range(conc)))


async def _raw_worker(
    config: SessionManagerConfig, sids: list[str], agent: str, events: int, conc: int
) -> None:
    keys = KeySpace(config.namespace)
    async with SessionManager(config) as manager:  # the settings argument exactly as huddle builds it
        settings = await manager.emit_settings()
    client = create_client(config)
    script = client.register_script(script_source("emit"))
    script.sha = await client.script_load(script.script)  # like SessionManager.connect(): no NOSCRIPT storm
    payload = '{"changeInfo":{"elementType":"function","entityIds":["src/auth/login.ts"],"operation":"updated"},"data":{"lines_changed":42}}'
    prepared = []
    for sid in sids:
        session = keys.session(sid)
        prepared.append((session.emit, session.channel, sid))
    queue = iter(range(events))

    async def lane() -> None:
        for i in queue:
            session_keys, channel, sid = prepared[i % len(prepared)]
            # emit.lua's layout (see its header); 'z': plain redis-py re-sends identical bytes, so the retry
            # token is claimed in the tokens zset, as huddle does on such a client
            args = [
                sid,
                agent,
                "modified",
                payload,
                uuid.uuid4().hex[:16],
                "",
                "",
                "",
                settings,
                channel,
                "z",
            ]
            await script(keys=session_keys, args=args)

    await asyncio.gather(*(lane() for _ in range(conc)))
    await client.aclose()


def _process(
    kind: str, config: SessionManagerConfig, sids: list[str], agent: str, args: Any, barrier: Any, out: Any
) -> None:
    async def run() -> float:
        async with SessionManager(config) as manager:  # joining is setup, not measured
            for sid in sids:
                await manager.join_session(sid, agent)
        await asyncio.to_thread(barrier.wait)
        started = time.perf_counter()
        worker = _huddle_worker if kind == "huddle" else _raw_worker
        await worker(config, sids, agent, args.events, args.concurrency)
        return time.perf_counter() - started

    out.put(asyncio.run(run()))


async def _create_sessions(config: SessionManagerConfig, count: int) -> list[str]:
    async with SessionManager(config) as manager:
        return [await manager.create_session("owner") for _ in range(count)]


def measure(kind: str, url: str, args: argparse.Namespace) -> tuple[float, list[str], str]:
    """Events per second for ``kind`` (huddle | raw) against ``url``; also the sessions and namespace used."""
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    config = SessionManagerConfig(
        redis_url=url, namespace=namespace, max_events_per_session=100_000, max_connections=args.concurrency
    )
    sids = asyncio.run(_create_sessions(config, args.sessions))
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(args.processes), ctx.Queue()
    share = [sids[i :: args.processes] for i in range(args.processes)]
    procs = [
        ctx.Process(target=_process, args=(kind, config, share[i], f"agent-{i}", args, barrier, out))
        for i in range(args.processes)
    ]
    for proc in procs:
        proc.start()
    walls: list[float] = []
    while len(walls) < len(procs):
        try:
            walls.append(out.get(timeout=1))
        except queue.Empty:
            if any(proc.exitcode not in (None, 0) for proc in procs):
                for proc in procs:
                    proc.kill()
                raise SystemExit(f"a {kind} worker process failed (see its traceback above)") from None
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"a {kind} worker failed with exit code {proc.exitcode}")
    return args.processes * args.events / max(walls), sids, namespace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--events", type=int, default=3000, help="events per process")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight per process")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each is kept")
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} cores; {args.processes} processes x {args.events} events, {args.sessions} sessions, "
        f"{args.concurrency} in flight per process, best of {args.rounds} rounds"
    )
    results: dict[tuple[str, str], float] = {}
    with EmbeddedRedis() as single, EmbeddedCluster(masters=3, replicas=0) as cluster:
        print(f"redis-server {single.version()}")
        targets = {"1 node": single.url, "3-master cluster": cluster.url}
        spread: dict[int, int] = {}
        for _ in range(args.rounds):
            for topology, url in targets.items():
                for kind in ("raw", "huddle"):
                    rate, sids, namespace = measure(kind, url, args)
                    results[(topology, kind)] = max(results.get((topology, kind), 0.0), rate)
                    if topology != "1 node":
                        keys = KeySpace(namespace)
                        spread = cluster.distribution([keys.session(sid).meta for sid in sids])
    print(f"\n{'topology':<18}{'raw redis-py ev/s':>20}{'huddle ev/s':>14}{'huddle/raw':>12}")
    for topology in ("1 node", "3-master cluster"):
        raw, hud = results[(topology, "raw")], results[(topology, "huddle")]
        print(f"{topology:<18}{raw:>20,.0f}{hud:>14,.0f}{hud / raw:>12.2f}")
    ratio = results[("3-master cluster", "huddle")] / results[("1 node", "huddle")]
    raw_ratio = results[("3-master cluster", "raw")] / results[("1 node", "raw")]
    print(f"\ncluster / 1 node: huddle {ratio:.2f}x, raw redis-py {raw_ratio:.2f}x")
    print("sessions per master (port: count): " + ", ".join(f"{p}: {n}" for p, n in sorted(spread.items())))


if __name__ == "__main__":
    main()
