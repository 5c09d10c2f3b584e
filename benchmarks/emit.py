"""Benchmark: ``SessionManager.emit_event`` against a raw redis-py EVALSHA baseline doing the same Redis work.

Run: ``.venv/bin/python benchmarks/emit.py`` (``make bench``). Uses ``HUDDLE_REDIS_URL`` if set, else starts an
embedded redis-server. Both sides run in the same process, on the same server, with clients built from the same
settings. Within each round the two sides run in alternating blocks (ABBA), each on its own fresh session, so
load from other processes hits both alike; the medians over the rounds are reported. A warm-up run per side
checks (INFO commandstats) that both make the server run the same commands.

The baseline EVALSHAs the very text of ``scripts/common.lua`` + ``scripts/emit.lua`` (read from the installed
package, so the server work is identical: TIME, idempotency HSET, XADD, agent HSET, meta HSET, PEXPIREs,
PUBLISH, auto-checkpoint every N, trimming) with a payload serialized once and tokens generated up front.
What the ratio measures is therefore huddle's Python overhead: id checks, event validation, serialization,
argument building, error mapping and result parsing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import huddle
from huddle import EmbeddedRedis, SessionEvent, SessionManager, SessionManagerConfig
from huddle.backend.connection import RedisClient, create_client
from huddle.core.keys import SessionKeys

TARGET_SEQUENTIAL = 0.75
TARGET_CONCURRENT = 0.6

EVENT: dict[str, Any] = {
    "type": "modified",
    "changeInfo": {
        "elementType": "function",
        "entityIds": ["src/auth/login.ts", "src/auth/session.ts"],
        "operation": "updated",
        "description": "validate the refresh token before issuing a new one",
    },
    "impact": {"severity": "medium", "affectedEntities": ["auth.test.ts"]},
    "data": {"lines_changed": 42, "reviewer": "frontend-agent"},
}
"""A typical agent event, as a plain dict with the spec's camelCase names (validated on every call)."""

EmitCall = Callable[[int, str], Awaitable[Any]]
"""Emit event number ``i`` as ``actor``."""


@dataclass(frozen=True)
class Sample:
    """One timed run: wall seconds, this process's CPU seconds and per-call latencies (seconds)."""

    events: int
    wall: float
    cpu: float
    latencies: list[float]

    @property
    def throughput(self) -> float:
        return self.events / self.wall

    @property
    def cpu_per_event(self) -> float:
        """Client CPU per emit: less disturbed than wall time by other processes on a shared machine."""
        return self.cpu / self.events

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def merged(samples: Sequence[Sample]) -> Sample:
    """Several blocks of one side as one sample."""
    return Sample(
        sum(s.events for s in samples),
        sum(s.wall for s in samples),
        sum(s.cpu for s in samples),
        [latency for s in samples for latency in s.latencies],
    )


async def run_sequential(emit: EmitCall, actor: str, count: int, first: int = 0) -> Sample:
    """``count`` emits one after the other (event numbers ``first`` on)."""
    latencies = []
    clock = time.perf_counter
    cpu, begin = time.process_time(), clock()
    for i in range(first, first + count):
        start = clock()
        await emit(i, actor)
        latencies.append(clock() - start)
    return Sample(count, clock() - begin, time.process_time() - cpu, latencies)


async def run_concurrent(emit: EmitCall, actors: Sequence[str], per_agent: int, first: int = 0) -> Sample:
    """Every actor emits ``per_agent`` events, all actors at once (one task each)."""
    latencies: list[float] = []
    clock = time.perf_counter

    async def agent(index: int, actor: str) -> None:
        for i in range(per_agent):
            start = clock()
            await emit(first + index * per_agent + i, actor)
            latencies.append(clock() - start)

    cpu, begin = time.process_time(), clock()
    await asyncio.gather(*(agent(index, actor) for index, actor in enumerate(actors)))
    return Sample(per_agent * len(actors), clock() - begin, time.process_time() - cpu, latencies)


class Baseline:
    """Raw redis-py: EVALSHA of emit.lua's exact text with pre-built arguments."""

    def __init__(self, client: RedisClient, config: SessionManagerConfig) -> None:
        folder = Path(huddle.__file__).parent / "scripts"
        self.source = (folder / "common.lua").read_text() + "\n" + (folder / "emit.lua").read_text()
        self.client = client
        self.config = config
        self.sha = ""
        self.payload = SessionEvent.model_validate(EVENT).payload_json()

    async def load(self) -> None:
        self.sha = await self.client.script_load(self.source)

    def emitter(self, keys: SessionKeys, session_id: str, count: int) -> EmitCall:
        """An emit call for one session; its arguments (tokens included) are built before timing starts."""
        cfg = self.config
        failure_ttl = str(cfg.failure_snapshot_ttl * 1000) if cfg.enable_failure_snapshots else ""
        tail = [
            "", "", "", 1, cfg.checkpoint_interval, cfg.max_events_per_session, keys.channel,
            ",".join(cfg.failure_states), failure_ttl, cfg.failure_snapshot_events, cfg.index_refresh_ms,
            cfg.max_checkpoints_per_session, "PUBLISH",
        ]  # fmt: skip
        tokens = [os.urandom(8).hex() for _ in range(count)]
        head = [self.sha, 6, *keys.all, session_id]
        etype, payload, evalsha = EVENT["type"], self.payload, self.client.evalsha

        def emit(i: int, actor: str) -> Awaitable[Any]:
            call: Awaitable[Any] = evalsha(*head, actor, etype, payload, tokens[i], *tail)
            return call

        return emit


def huddle_emitter(manager: SessionManager, session_id: str) -> EmitCall:
    """``manager.emit_event`` with the event as a dict, as an agent would call it."""

    def emit(i: int, actor: str) -> Awaitable[int]:
        return manager.emit_event(session_id, EVENT, actor)

    return emit


async def new_session(manager: SessionManager, agents: Sequence[str]) -> str:
    """A fresh session with every agent a member (set-up, not timed)."""
    session_id = await manager.create_session(agents[0])
    for agent in agents[1:]:
        await manager.join_session(session_id, agent)
    return session_id


@dataclass
class Results:
    """Samples per (mode, side) over all rounds."""

    samples: dict[tuple[str, str], list[Sample]]

    def add(self, mode: str, side: str, sample: Sample) -> None:
        self.samples.setdefault((mode, side), []).append(sample)

    def median(self, mode: str, side: str, metric: Callable[[Sample], float]) -> float:
        return statistics.median(metric(s) for s in self.samples[(mode, side)])

    def round_ratios(self, mode: str) -> list[float]:
        pairs = zip(self.samples[(mode, "huddle")], self.samples[(mode, "baseline")], strict=True)
        return [h.throughput / b.throughput for h, b in pairs]


async def command_counts(client: RedisClient) -> dict[str, int]:
    """Calls per command on the server so far (INFO commandstats; commands run by scripts count too)."""
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


def work_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands the server ran between two ``command_counts`` (INFO itself excluded)."""
    delta = {name: calls - before.get(name, 0) for name, calls in after.items() if name != "info"}
    return {name: calls for name, calls in sorted(delta.items()) if calls}


ALLOWED_EXTRA = {"zadd"}
"""What huddle may send besides the script: the activity-index refresh (ZADD GT, once per index_refresh_ms)."""


async def bench(args: argparse.Namespace, url: str) -> dict[str, Any]:
    config = SessionManagerConfig(redis_url=url, namespace=f"bench{uuid.uuid4().hex[:8]}")
    agents = [f"agent-{n:02d}" for n in range(args.agents)]
    results = Results({})
    async with AsyncExitStack() as stack:
        manager = await stack.enter_async_context(SessionManager(config))
        raw = create_client(config)
        stack.push_async_callback(raw.aclose)
        baseline = Baseline(raw, config)
        await baseline.load()
        server = await raw.info("server")

        async def emitter(mode: str, side: str, count: int) -> EmitCall:
            """An emit call on a fresh session (set-up, not timed)."""
            session_id = await new_session(manager, agents if mode == "concurrent" else agents[:1])
            if side == "baseline":
                return baseline.emitter(manager.keys.session(session_id), session_id, count)
            return huddle_emitter(manager, session_id)

        async def block(mode: str, emit: EmitCall, events: int, first: int) -> Sample:
            if mode == "sequential":
                return await run_sequential(emit, agents[0], events, first)
            return await run_concurrent(emit, agents, events // len(agents), first)

        async def audit(mode: str, side: str, count: int) -> dict[str, int]:
            """An untimed run of one side alone; returns the commands the server ran for it."""
            emit = await emitter(mode, side, count)
            before = await command_counts(raw)
            await block(mode, emit, count, 0)
            return work_delta(before, await command_counts(raw))

        async def paired_round(mode: str, count: int, block_events: int) -> None:
            """Both sides, each on its own fresh session, in alternating blocks (ABBA): a burst of load from
            other processes hits both sides alike instead of one whole run."""
            emits = {side: await emitter(mode, side, count) for side in ("baseline", "huddle")}
            blocks: dict[str, list[Sample]] = {"baseline": [], "huddle": []}
            for n, first in enumerate(range(0, count - block_events + 1, block_events)):
                for side in ("baseline", "huddle") if n % 2 == 0 else ("huddle", "baseline"):
                    blocks[side].append(await block(mode, emits[side], block_events, first))
            for side, samples in blocks.items():
                results.add(mode, side, merged(samples))

        # Warm-up, and a check that both sides make the server do the same work (the same commands, as often).
        work: dict[str, dict[str, int]] = {}
        for mode in ("sequential", "concurrent"):
            for side in ("baseline", "huddle"):
                work[f"{mode}/{side}"] = await audit(mode, side, args.warmup)
        extra = {
            mode: {
                name: work[f"{mode}/huddle"].get(name, 0) - work[f"{mode}/baseline"].get(name, 0)
                for name in work[f"{mode}/huddle"].keys() | work[f"{mode}/baseline"].keys()
                if work[f"{mode}/huddle"].get(name, 0) != work[f"{mode}/baseline"].get(name, 0)
            }
            for mode in ("sequential", "concurrent")
        }
        same_work = all(
            name in ALLOWED_EXTRA and diff > 0 for diffs in extra.values() for name, diff in diffs.items()
        )
        for n in range(args.rounds):
            await paired_round("sequential", args.events, args.block)
            await paired_round("concurrent", args.concurrent_events, args.concurrent_block)
            if not args.quiet:
                seq, conc = results.round_ratios("sequential")[-1], results.round_ratios("concurrent")[-1]
                print(f"round {n + 1}/{args.rounds}: ratio sequential {seq:.3f}, concurrent {conc:.3f}")

    report: dict[str, Any] = {
        "redis_version": server.get("redis_version"),
        "python": sys.version.split()[0],
        "rounds": args.rounds,
        "agents": args.agents,
        "server_work_per_warmup_run": work,
        "huddle_extra_commands": extra,
        "same_server_work": same_work,
        "modes": {},
    }
    for mode, target in (("sequential", TARGET_SEQUENTIAL), ("concurrent", TARGET_CONCURRENT)):
        entry: dict[str, Any] = {"target": target}
        for side in ("baseline", "huddle"):
            entry[side] = {
                "events_per_round": results.samples[(mode, side)][0].events,
                "throughput": results.median(mode, side, lambda s: s.throughput),
                "p50_ms": results.median(mode, side, lambda s: s.percentile(0.50)) * 1000,
                "p99_ms": results.median(mode, side, lambda s: s.percentile(0.99)) * 1000,
                "client_cpu_us_per_event": results.median(mode, side, lambda s: s.cpu_per_event) * 1e6,
            }
        entry["ratio"] = entry["huddle"]["throughput"] / entry["baseline"]["throughput"]
        entry["round_ratios"] = results.round_ratios(mode)
        entry["met"] = entry["ratio"] >= target
        report["modes"][mode] = entry
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\nemit_event vs raw EVALSHA — redis {report['redis_version']}, python {report['python']}, "
        f"median of {report['rounds']} rounds"
    )
    seq_work = report["server_work_per_warmup_run"]["sequential/baseline"]
    extra = {mode: diffs for mode, diffs in report["huddle_extra_commands"].items() if diffs}
    print(
        f"server work per side {'identical' if report['same_server_work'] else 'DIFFERENT'} "
        f"(huddle's extra commands: {extra or 'none'}); per warm-up run: "
        + ", ".join(f"{name} {calls}" for name, calls in seq_work.items())
    )
    header = (
        f"{'mode':<11} {'side':<9} {'events':>7} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu us/op':>10}"
    )
    print(header)
    print("-" * len(header))
    for mode, entry in report["modes"].items():
        label = mode if mode == "sequential" else f"{mode[:4]}. x{report['agents']}"
        for side in ("baseline", "huddle"):
            row = entry[side]
            print(
                f"{label:<11} {side:<9} {row['events_per_round']:>7} {row['throughput']:>9.0f} "
                f"{row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} {row['client_cpu_us_per_event']:>10.1f}"
            )
        rounds = ", ".join(f"{r:.2f}" for r in entry["round_ratios"])
        verdict = "met" if entry["met"] else "MISSED"
        print(
            f"{'':<11} ratio     {entry['ratio']:.3f} (target >= {entry['target']}: {verdict}; rounds: {rounds})"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=2000, help="sequential emits per round and side")
    parser.add_argument(
        "--concurrent-events",
        type=int,
        default=10000,
        help="concurrent emits per round and side (split over agents)",
    )
    parser.add_argument(
        "--block", type=int, default=None, help="sequential emits per alternating block (default 100)"
    )
    parser.add_argument(
        "--concurrent-block",
        type=int,
        default=None,
        help="concurrent emits per alternating block (default 1000)",
    )
    parser.add_argument("--agents", type=int, default=50, help="concurrent agents (tasks), one session")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds; medians are reported")
    parser.add_argument("--warmup", type=int, default=300, help="untimed emits per side before the rounds")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if a ratio misses its target or the server work differs"
    )
    parser.add_argument("--quiet", action="store_true", help="no per-round lines")
    args = parser.parse_args(argv)
    if args.block is None:
        args.block = min(100, args.events)
    if args.concurrent_block is None:
        args.concurrent_block = min(1000, args.concurrent_events)
    for name in ("events", "concurrent_events", "block", "concurrent_block", "agents", "rounds", "warmup"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.block > args.events or args.concurrent_block > args.concurrent_events:
        parser.error("a block cannot be larger than the events per round")
    if args.concurrent_block % args.agents or args.warmup % args.agents:
        parser.error("--concurrent-block and --warmup must be multiples of --agents")
    return args


async def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    url = os.environ.get("HUDDLE_REDIS_URL")
    if url:
        report = await bench(args, url)
    else:
        async with EmbeddedRedis() as server:
            report = await bench(args, server.url)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    missed = [mode for mode, entry in report["modes"].items() if not entry["met"]]
    return 1 if args.check and (missed or not report["same_server_work"]) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
