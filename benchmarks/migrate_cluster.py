"""Benchmark: full session migration standalone -> 3-master cluster and back, next to a raw DUMP/RESTORE copy.

The raw copy (pipelined DUMP + PTTL on the source, RESTORE ... REPLACE on the target, in batches; redis-py's
cluster client splits each pipeline per node) moves the same keys with no per-session logic: it is the
physical limit of each direction. A standalone -> standalone huddle migration of the same data is measured too,
to show what the cluster side costs. All servers run on this machine (2 cores shared by every process, so the
cluster cannot show more throughput than one node); every number printed is measured in this run.

    .venv/bin/python benchmarks/migrate_cluster.py --sessions 5000 --events 20
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from migrate import copy_keys, populate
from redis.asyncio.cluster import RedisCluster

from huddle import EmbeddedRedis
from huddle.backend.topology import EmbeddedCluster
from huddle.migration import MigrationConfig, SessionMigration

NAMESPACE = "bench"


def raw_client(url: str, cluster: bool) -> Any:
    """A plain redis-py client (bytes), cluster-aware for the cluster side."""
    if cluster:
        return RedisCluster.from_url(url.split("?")[0], decode_responses=False)
    return aioredis.Redis.from_url(url, decode_responses=False)


async def raw_copy(source_url: str, source_cluster: bool, target_url: str, target_cluster: bool,
                   batch_keys: int) -> tuple[float, int]:  # fmt: skip
    """Pipelined DUMP/PTTL -> RESTORE REPLACE of every session key of the namespace; returns (seconds, keys)."""
    source, target = raw_client(source_url, source_cluster), raw_client(target_url, target_cluster)
    return await copy_keys(source, target, batch_keys)


async def huddle_copy(
    source_url: str, target_url: str, batch: int, validate: bool
) -> tuple[float, float | None]:
    """A full SessionMigration; returns (seconds for the whole task, seconds of its validation if any)."""
    config = MigrationConfig(
        source_url=source_url, target_url=target_url, namespace=NAMESPACE, batch_size=batch
    )
    async with SessionMigration(config) as migration:
        started = time.perf_counter()
        task = await migration.wait(await migration.start_full_migration(validate_after=validate))
        elapsed = time.perf_counter() - started
    assert task.status == "completed", task
    assert task.progress.failed_sessions == 0, task.recent_errors
    if validate:
        assert task.validation is not None and task.validation.ok, task.validation
        return elapsed, task.validation.duration_ms / 1000
    return elapsed, None


async def wipe(url: str, cluster: bool) -> None:
    client = raw_client(url, cluster)
    if cluster:
        await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.flushall()
    await client.aclose()


async def direction(label: str, source: tuple[str, bool], target: tuple[str, bool], batch: int,
                    sessions: int, stored: int, rounds: int) -> None:  # fmt: skip
    """Raw copy, huddle without and with validation, ``rounds`` times interleaved; the best time of each counts
    (the machine is shared: the minimum is the least disturbed run, and interleaving spreads drift evenly)."""

    def rates(seconds: float) -> str:
        return f"{sessions / seconds:8.0f} sessions/s {stored / seconds:9.0f} events/s ({seconds:6.2f}s)"

    raw: list[float] = []
    plain: list[float] = []
    validated: list[tuple[float, float]] = []
    keys = 0
    for _ in range(rounds):
        await wipe(*target)
        seconds, keys = await raw_copy(*source, *target, batch * 5)
        raw.append(seconds)
        await wipe(*target)
        plain.append((await huddle_copy(source[0], target[0], batch, validate=False))[0])
        await wipe(*target)
        total, validation = await huddle_copy(source[0], target[0], batch, validate=True)
        assert validation is not None
        validated.append((total, validation))
    raw_s, plain_s = min(raw), min(plain)
    val_s, validation_s = min(validated)
    print(f"{label} (best of {rounds})")
    print(f"  raw DUMP/RESTORE ({keys} keys)       {rates(raw_s)}")
    print(f"  huddle, no validation               {rates(plain_s)}  ratio to raw {raw_s / plain_s:.2f}")
    print(f"  huddle + validation                 {rates(val_s)}  ratio to raw {raw_s / val_s:.2f}; "
          f"validation.duration_ms {validation_s:.2f}s; total {(val_s / plain_s - 1) * 100:+.0f}% vs no validation")  # fmt: skip


async def main(sessions: int, events: int, batch: int, rounds: int) -> None:
    with EmbeddedCluster(masters=3, replicas=0) as cluster:
        async with EmbeddedRedis() as single, EmbeddedRedis() as other:
            print(f"redis {single.version()}; 3-master cluster (no replicas); {sessions} sessions x {events} "
                  f"events, batch {batch}")  # fmt: skip
            started = time.perf_counter()
            stored = await populate(single.url, sessions, events)
            print(f"populated {sessions} sessions / {stored} events in {time.perf_counter() - started:.1f}s")
            await direction("standalone -> standalone (reference)", (single.url, False), (other.url, False),
                            batch, sessions, stored, rounds)  # fmt: skip
            await direction("standalone -> cluster", (single.url, False), (cluster.url, True), batch, sessions,
                            stored, rounds)  # fmt: skip
            # Only the session keys on the cluster (no migration markers), copied raw, then moved back.
            await wipe(cluster.url, True)
            await raw_copy(single.url, False, cluster.url, True, batch * 5)
            await direction("cluster -> standalone", (cluster.url, True), (other.url, False), batch, sessions,
                            stored, rounds)  # fmt: skip
            spread = cluster.distribution([f"{NAMESPACE}:{{s{i}}}:meta" for i in range(sessions)])
            print(f"sessions per master: {sorted(spread.values())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.sessions, args.events, args.batch_size, args.rounds))
