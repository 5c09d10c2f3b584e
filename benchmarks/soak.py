"""Soak: mixed load over N live sessions with creation and expiry churn, live subscribers and a recording.

Samples every --every seconds: process RSS, Redis used_memory, connected clients, asyncio tasks and the pool's
connections; prints a line per sample and, at the end, start/end values and least-squares slopes per minute.
No fault is injected: every error is counted and reported (expected 0). Like a deployment, the process runs
``perform_maintenance`` every --maintenance-every seconds (0: never, to see what skipping it costs).

    .venv/bin/python benchmarks/soak.py --minutes 10 --sessions 1000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psutil

from huddle import EmbeddedRedis, HuddleError, SessionManager, SessionManagerConfig, SessionReplay

SUBSCRIBERS = 20
AGENTS = [f"agent-{n}" for n in range(8)]


@dataclass
class Sample:
    """One measurement."""

    at: float
    rss_mb: float
    used_memory_mb: float
    redis_clients: int
    tasks: int
    pool_connections: int
    sessions: int
    events: int
    local_members: int
    """Entries in ``SessionManager.local_members`` (sessions this manager created or joined and did not leave)."""


@dataclass
class Load:
    """The running soak's state and counters."""

    manager: SessionManager
    replay: SessionReplay
    rng: random.Random
    live: list[str] = field(default_factory=list)
    members: dict[str, list[str]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    stopping: bool = False


def _pool_connections(manager: SessionManager) -> int:
    pool: Any = getattr(manager.client, "connection_pool", None)
    if pool is None:
        return -1
    return len(getattr(pool, "_available_connections", [])) + len(getattr(pool, "_in_use_connections", []))


def _forget(load: Load, sid: str) -> bool:
    """Drop ``sid`` from the live set; False if another task already did."""
    if sid not in load.members:
        return False
    del load.members[sid]
    load.live.remove(sid)
    return True


async def _new_session(load: Load) -> None:
    # short TTLs: a session the load abandons expires within a minute (expiry churn)
    ttl = load.rng.choice((20, 40, 60))
    creator = load.rng.choice(AGENTS)
    sid = await load.manager.create_session(creator, ttl=ttl)
    load.live.append(sid)
    load.members[sid] = [creator]
    load.counts["created"] += 1


async def _step(load: Load) -> None:
    """One unit of mixed load: mostly emits, some joins/leaves/checkpoints/completes/reads, creation churn."""
    rng, manager = load.rng, load.manager
    roll = rng.random()
    if roll < 0.03 or len(load.live) < 10:
        _forget(load, rng.choice(load.live))  # abandoned: left to expire
        load.counts["abandoned"] += 1
        await _new_session(load)
        return
    sid = rng.choice(load.live)
    try:
        if roll < 0.08:
            await manager.get_session(sid)
            load.counts["reads"] += 1
        elif roll < 0.80:
            actor = rng.choice(load.members.get(sid) or ["gone"])
            await manager.emit_event(sid, {"type": "modified", "data": {"n": load.counts["emits"]}}, actor)
            load.counts["emits"] += 1
        elif roll < 0.86:
            agent = rng.choice(AGENTS)
            if await manager.join_session(sid, agent) and sid in load.members:
                load.members[sid].append(agent)
            load.counts["joins"] += 1
        elif roll < 0.90:
            await manager.checkpoint(sid)
            load.counts["checkpoints"] += 1
        elif roll < 0.97:
            await manager.get_events(sid, limit=50)
            load.counts["reads"] += 1
        else:
            await manager.complete_session(sid, (load.members.get(sid) or ["gone"])[0])
            load.counts["completed"] += 1
            if _forget(load, sid):
                await _new_session(load)
    except HuddleError as exc:
        name = type(exc).__name__
        if name in ("SessionNotFoundError", "SessionExpiredError"):
            if sid in load.members:
                _forget(load, sid)
                load.counts["expired"] += 1
            await _new_session(load)
        elif name in ("NotAMemberError", "SessionCompletedError") and sid not in load.members:
            load.counts[f"raced {name}"] += 1  # another task completed or abandoned it meanwhile
        elif name in ("NotAMemberError", "SessionCompletedError"):
            load.counts[f"refused {name}"] += 1  # expected refusals of the random mix, not failures
        else:
            load.errors[name] += 1


async def _worker(load: Load, pause: float) -> None:
    while not load.stopping:
        try:
            await _step(load)
        except Exception as exc:  # counted: the soak reports every unexpected error
            load.errors[f"UNTYPED {type(exc).__name__}"] += 1
        await asyncio.sleep(pause)  # paced: a soak measures drift at a steady rate, not peak throughput


async def _subscriber(load: Load) -> None:
    while not load.stopping:
        if not load.live:
            await asyncio.sleep(0.1)
            continue
        sid = load.rng.choice(load.live)
        try:
            async with asyncio.timeout(load.rng.uniform(2, 10)):
                async for _ in load.manager.subscribe(sid):
                    load.counts["delivered"] += 1
        except TimeoutError:
            load.counts["subscriptions rotated"] += 1
        except HuddleError as exc:
            load.counts[f"subscription ended {type(exc).__name__}"] += 1


async def _recording(load: Load) -> None:
    """One session recorded at a time; every ~30 s the recording stops and a new one starts."""
    while not load.stopping:
        sid = await load.manager.create_session("recorder", record=True)
        load.live.append(sid)
        load.members[sid] = ["recorder"]
        await asyncio.sleep(30)
        try:
            replay_id = await load.replay.stop_recording(sid)
            load.counts["recordings"] += 1
            if not (await load.replay.verify_replay(replay_id)).ok:
                load.errors["recording failed verify"] += 1
        except HuddleError as exc:
            load.errors[f"recording {type(exc).__name__}"] += 1


async def _maintenance(load: Load, every: float) -> None:
    """``perform_maintenance`` on a timer, as a deployment would run it (e.g. from cron or a background task)."""
    while not load.stopping:
        await asyncio.sleep(every)
        try:
            report = await load.manager.perform_maintenance()
        except HuddleError as exc:
            load.errors[f"maintenance {type(exc).__name__}"] += 1
            continue
        load.counts["maintenance runs"] += 1
        load.counts["maintenance removed entries"] += (
            report.removed_active_entries + report.removed_failure_entries + report.removed_agent_entries
        )


async def _sample(load: Load, server: EmbeddedRedis, process: psutil.Process, started: float) -> Sample:
    info = await load.manager.client.info()
    return Sample(
        at=time.monotonic() - started,
        rss_mb=process.memory_info().rss / 2**20,
        used_memory_mb=int(info["used_memory"]) / 2**20,
        redis_clients=int(info["connected_clients"]),
        tasks=len(asyncio.all_tasks()),
        pool_connections=_pool_connections(load.manager),
        sessions=len(load.live),
        events=load.counts["emits"],
        local_members=len(load.manager.local_members),
    )


def _slope(samples: list[Sample], attr: str) -> float:
    """Least-squares slope of ``attr`` per minute."""
    xs = [s.at / 60 for s in samples]
    ys = [float(getattr(s, attr)) for s in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


async def main(
    minutes: float,
    sessions: int,
    every: float,
    workers: int,
    rate: float,
    max_events: int,
    seed: int,
    maintenance_every: float,
) -> None:
    process = psutil.Process()
    async with EmbeddedRedis() as server:
        config = SessionManagerConfig(
            redis_url=server.url, namespace="soak", max_events_per_session=max_events
        )
        async with SessionManager(config) as manager:
            replay = SessionReplay(manager)
            load = Load(manager, replay, random.Random(seed))
            for _ in range(sessions):
                await _new_session(load)
            started = time.monotonic()
            tasks = [asyncio.create_task(_worker(load, workers / rate)) for _ in range(workers)]
            tasks += [asyncio.create_task(_subscriber(load)) for _ in range(SUBSCRIBERS)]
            tasks.append(asyncio.create_task(_recording(load)))
            if maintenance_every > 0:
                tasks.append(asyncio.create_task(_maintenance(load, maintenance_every)))
            samples: list[Sample] = []
            print("t_s rss_mb redis_used_mb redis_clients tasks pool_conns live_sessions emits local_members")
            while time.monotonic() - started < minutes * 60:
                sample = await _sample(load, server, process, started)
                samples.append(sample)
                print(
                    f"{sample.at:6.0f} {sample.rss_mb:7.1f} {sample.used_memory_mb:7.1f} {sample.redis_clients:4d}"
                    f" {sample.tasks:5d} {sample.pool_connections:4d} {sample.sessions:6d} {sample.events:9d}"
                    f" {sample.local_members:7d}",
                    flush=True,
                )
                # keep the live set near its target size (expired sessions leave it as they are found)
                while len(load.live) < sessions:
                    await _new_session(load)
                await asyncio.sleep(every)
            samples.append(await _sample(load, server, process, started))
            load.stopping = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await replay.close()
    # the first minute is warm-up (pools, caches, sessions filling up): slopes are over the rest
    steady = [s for s in samples if s.at >= 60] or samples
    first, last = samples[0], samples[-1]
    upkeep = (
        f"perform_maintenance every {maintenance_every:g} s" if maintenance_every > 0 else "no maintenance"
    )
    print(
        f"\nran {last.at / 60:.1f} min, {workers} workers paced to {rate:.0f} ops/s, {SUBSCRIBERS} subscribers,"
        f" 1 recording at a time, max_events_per_session={max_events}, {upkeep}"
    )
    print("counts:", dict(load.counts))
    print("errors:", dict(load.errors) or "none")
    for attr, unit in (("rss_mb", "MB"), ("used_memory_mb", "MB"), ("tasks", ""), ("pool_connections", ""),
                       ("redis_clients", ""), ("local_members", "")):  # fmt: skip
        print(
            f"{attr:17s} start {getattr(first, attr):8.1f} end {getattr(last, attr):8.1f} "
            f"slope after the first minute {_slope(steady, attr):+8.3f} {unit}/min"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--every", type=float, default=15, help="seconds between samples")
    parser.add_argument("--workers", type=int, default=16, help="concurrent load tasks")
    parser.add_argument("--rate", type=float, default=1500, help="target operations per second (all workers)")
    parser.add_argument("--max-events", type=int, default=100, help="max_events_per_session (log cap)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--maintenance-every",
        type=float,
        default=30,
        help="seconds between perform_maintenance runs (0: never)",
    )
    args = parser.parse_args()
    options = (args.minutes, args.sessions, args.every, args.workers, args.rate, args.max_events, args.seed)
    asyncio.run(main(*options, maintenance_every=args.maintenance_every))
