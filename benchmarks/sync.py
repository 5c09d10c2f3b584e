"""Benchmark: N real-time sync links between two local redis-servers, next to a raw redis-py mirror.

Three runs over the same workload (events emitted through ``SessionManager`` at a fixed total rate, round
robin over the sessions), each in its own namespace:

- ``huddle (one reader)``: ``setup_cross_instance_sync(..., "real-time")``, the multiplexed follower;
- ``huddle (reader per link)``: the same links with one ``XREAD BLOCK`` per link (what a cluster source uses,
  and what every standalone link did before the follower);
- ``raw redis-py``: one XREAD BLOCK over every source stream and a pipelined XADD of the entries to the target
  with the same ids: no target position check, no delta script, no status, no idempotence. The physical limit.

Lag: an observer on the target blocks on every target stream and records when each event arrives; lag is that
moment minus the moment ``emit_event`` returned on the source (same process, same clock). Connections: the
source's CLIENT LIST is sampled while events flow (total clients minus those open before the sync started, and
clients blocked in XREAD). Status traffic: the status writer's pipelines against the syncs that triggered them.

    .venv/bin/python benchmarks/sync.py --sessions 200 --events 10 --rate 500
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.migration import MigrationConfig, SessionMigration


@dataclass
class Result:
    name: str
    lags: list[float] = field(default_factory=list)
    extra_connections: int = 0
    blocked_readers: int = 0
    note: str = ""

    def row(self, raw_p50: float | None) -> str:
        if not self.lags:
            return f"{self.name:26} {'-':>7} {'-':>9} {'-':>9} {'-':>9} {'-':>8} {'-':>8} {self.blocked_readers:8d}  {self.note}"
        lags = sorted(self.lags)
        p50 = statistics.median(lags)
        p95 = lags[int(len(lags) * 0.95) - 1]
        ratio = f"{p50 / raw_p50:6.2f}x" if raw_p50 else "   1.00x"
        return (f"{self.name:26} {len(lags):7d} {p50 * 1000:9.1f} {p95 * 1000:9.1f} {lags[-1] * 1000:9.1f}"
                f" {ratio} {self.extra_connections:8d} {self.blocked_readers:8d}  {self.note}")  # fmt: skip


async def make_sessions(url: str, namespace: str, count: int) -> tuple[SessionManager, list[str]]:
    config = SessionManagerConfig(redis_url=url, namespace=namespace, max_events_per_session=10_000)
    manager = await SessionManager(config).connect()
    sids = [f"b{i}" for i in range(count)]
    for start in range(0, count, 100):
        await asyncio.gather(
            *(manager.create_session("alice", session_id=sid) for sid in sids[start : start + 100])
        )
    return manager, sids


async def source_clients(client: aioredis.Redis) -> tuple[int, int]:
    """(connected clients, clients blocked in XREAD) on the source."""
    clients = await client.client_list()
    blocked = sum(1 for c in clients if c["cmd"] == "xread" and "b" in c["flags"])
    return len(clients), blocked


async def workload(
    source: SessionManager,
    target_url: str,
    namespace: str,
    sids: list[str],
    events: int,
    rate: float,
    admin: aioredis.Redis,
    baseline_clients: int,
    result: Result,
) -> None:
    """Emit ``events`` per session at ``rate`` events/s; observe arrivals on the target; sample connections."""
    emitted: dict[tuple[str, int], float] = {}
    arrived: dict[tuple[str, int], float] = {}
    start_seq = {sid: (await source.get_session(sid)).last_seq for sid in sids}
    total = len(sids) * events
    target = aioredis.Redis.from_url(target_url, decode_responses=True)
    streams = {f"{namespace}:{{{sid}}}:events": f"0-{start_seq[sid]}" for sid in sids}
    by_stream = {f"{namespace}:{{{sid}}}:events": sid for sid in sids}

    produced = asyncio.Event()

    async def observe() -> None:  # the manager may add events of its own (checkpoints): wait for ours
        while not (produced.is_set() and all(key in arrived for key in emitted)):
            reply = await target.xread(streams, block=1000)
            now = time.perf_counter()
            for stream, entries in reply:
                for entry_id, _ in entries:
                    arrived[(by_stream[stream], int(entry_id.partition("-")[2]))] = now
                streams[stream] = entries[-1][0]

    async def produce() -> None:
        began = time.perf_counter()
        for n in range(total):
            sid = sids[n % len(sids)]
            due = began + n / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            seq = await source.emit_event(sid, {"type": "modified", "data": {"n": n}}, "alice")
            emitted[(sid, seq)] = time.perf_counter()
        produced.set()

    async def sample() -> None:
        while True:
            clients, blocked = await source_clients(admin)
            result.extra_connections = max(result.extra_connections, clients - baseline_clients)
            result.blocked_readers = max(result.blocked_readers, blocked)
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    try:
        await asyncio.wait_for(asyncio.gather(observe(), produce()), timeout=120)
    finally:
        sampler.cancel()
        await target.aclose()
    result.lags = [arrived[key] - emitted[key] for key in emitted]


async def run_huddle(source_url: str, target_url: str, args: argparse.Namespace, multiplexed: bool) -> Result:
    namespace = "bsync-mux" if multiplexed else "bsync-link"
    result = Result("huddle (one reader)" if multiplexed else "huddle (reader per link)")
    source, sids = await make_sessions(source_url, namespace, args.sessions)
    admin = aioredis.Redis.from_url(source_url, decode_responses=True)
    await source.emit_event(sids[0], {"type": "warmup"}, "alice")
    baseline = (await source_clients(admin))[0]
    config = MigrationConfig(source_url=source_url, target_url=target_url, namespace=namespace)
    try:
        async with SessionMigration(config) as migration:
            syncer = migration._syncer()  # the benchmark compares both reader designs
            if not multiplexed:
                syncer.follower = None
            began = time.perf_counter()
            done = 0
            try:
                async with asyncio.timeout(args.setup_timeout):
                    for sid in sids:  # one after the other, so setup does not open connections of its own
                        await migration.setup_cross_instance_sync(sid, "target", "real-time")
                        done += 1
            except TimeoutError:
                blocked = (await source_clients(admin))[1]
                result.blocked_readers = blocked
                result.note = (f"setup of {len(sids)} links unfinished after {args.setup_timeout:.0f}s: {done} set "
                               f"up; {blocked} readers blocked in XREAD hold the pool, syncs wait for a connection")  # fmt: skip
                return result
            setup_s = time.perf_counter() - began
            writes_before = syncer.board.writes
            syncs_before = sum(link.syncs for link in migration.list_cross_instance_sessions())
            await workload(
                source, target_url, namespace, sids, args.events, args.rate, admin, baseline, result
            )
            syncs = sum(link.syncs for link in migration.list_cross_instance_sessions()) - syncs_before
            writes = syncer.board.writes - writes_before
            errors = sum(link.errors for link in migration.list_cross_instance_sessions())
            result.note = (f"setup {setup_s:.2f}s; {syncs} syncs, {writes} status pipelines "
                           f"({writes / max(syncs, 1):.3f} per sync); sync errors {errors}")  # fmt: skip
    finally:
        await source.close()
        await admin.aclose()
    return result


async def run_raw(source_url: str, target_url: str, args: argparse.Namespace) -> Result:
    namespace = "bsync-raw"
    result = Result("raw redis-py mirror")
    source, sids = await make_sessions(source_url, namespace, args.sessions)
    admin = aioredis.Redis.from_url(source_url, decode_responses=True)
    await source.emit_event(sids[0], {"type": "warmup"}, "alice")
    baseline = (await source_clients(admin))[0]
    reader = aioredis.Redis.from_url(source_url, decode_responses=True)
    writer = aioredis.Redis.from_url(target_url, decode_responses=True)
    positions = {
        f"{namespace}:{{{sid}}}:events": f"0-{(await source.get_session(sid)).last_seq}" for sid in sids
    }

    async def mirror() -> None:
        while True:
            reply = await reader.xread(positions, block=1000)
            async with writer.pipeline(transaction=False) as pipe:
                for stream, entries in reply:
                    for entry_id, fields in entries:
                        pipe.xadd(stream, fields, id=entry_id)
                    positions[stream] = entries[-1][0]
                await pipe.execute()

    task = asyncio.create_task(mirror())
    try:
        await workload(source, target_url, namespace, sids, args.events, args.rate, admin, baseline, result)
    finally:
        task.cancel()
        for closing in (source.close, admin.aclose, reader.aclose, writer.aclose):
            await closing()
    result.note = "1 XREAD + 1 pipelined XADD per wake-up; no checks"
    return result


async def main(args: argparse.Namespace) -> None:
    async with EmbeddedRedis() as source, EmbeddedRedis() as target:
        print(f"source redis {source.version()}, target redis {target.version()}; {args.sessions} real-time links, "
              f"{args.events} events each at {args.rate:.0f} events/s total")  # fmt: skip
        runs: list[Callable[[], Awaitable[Result]]] = [
            lambda: run_raw(source.url, target.url, args),
            lambda: run_huddle(source.url, target.url, args, multiplexed=True),
        ]
        if not args.skip_per_link:
            runs.append(lambda: run_huddle(source.url, target.url, args, multiplexed=False))
        results = []
        for run in runs:
            results.append(await run())
            print(f"  done: {results[-1].name}", flush=True)
    raw_p50 = statistics.median(results[0].lags)
    print(
        f"{'':26} {'events':>7} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9} {'p50/raw':>8} {'+conns':>8} {'blocked':>8}"
    )
    for result in results:
        print(result.row(None if result is results[0] else raw_p50))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--events", type=int, default=10, help="events per session")
    parser.add_argument("--rate", type=float, default=500.0, help="events per second, all sessions together")
    parser.add_argument(
        "--setup-timeout", type=float, default=60.0, help="seconds allowed to set the links up"
    )
    parser.add_argument("--skip-per-link", action="store_true", help="skip the reader-per-link run")
    asyncio.run(main(parser.parse_args()))
