"""Which sessions a task moves, in batches with a resumable cursor (never all ids in memory at once).

- full: SCAN of the namespace's session meta keys. Completed sessions leave the activity index, so only a scan
  finds every session; a SCAN cursor is also exactly the resumable position a task needs.
- incremental: the sharded activity index, by score (last activity) from ``since``; never a scan.
- selective: the task's own id list, stored with the task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..connection import RedisClient
from ..keys import KeySpace
from ..store import redis_boundary
from .tasks import TaskStore

Batch = tuple[list[str], dict[str, Any]]


async def full_batches(
    client: RedisClient, keys: KeySpace, batch_size: int, cursor: Mapping[str, Any]
) -> AsyncIterator[Batch]:
    """Every session of the namespace, from a SCAN cursor."""
    if cursor.get("done"):
        return
    position = int(cursor.get("scan", 0))
    pattern = keys.session_pattern()
    while True:
        ids: list[str] = []
        while len(ids) < batch_size:
            position, found = await _scan(client, position, pattern, batch_size)
            ids.extend(keys.session_id_from_meta_key(str(key)) for key in found)
            if position == 0:
                break
        if ids or position == 0:
            yield ids, {"scan": position, "done": position == 0}
        if position == 0:
            return


@redis_boundary
async def _scan(client: RedisClient, position: int, pattern: str, count: int) -> tuple[int, list[str]]:
    position, found = await client.scan(position, match=pattern, count=count, _type="hash")
    return int(position), list(found)


@redis_boundary
async def count_full(client: RedisClient, keys: KeySpace, batch_size: int) -> int:
    """How many sessions the namespace holds (a counting SCAN; nothing is kept)."""
    total = 0
    async for _ in client.scan_iter(match=keys.session_pattern(), count=max(batch_size, 500), _type="hash"):
        total += 1
    return total


async def incremental_batches(
    client: RedisClient, keys: KeySpace, since_ms: int, batch_size: int, cursor: Mapping[str, Any]
) -> AsyncIterator[Batch]:
    """Sessions whose last activity is at or after ``since_ms``, shard by shard, by ascending score.

    The cursor is (shard, score, how many members at that score were already taken). A session that becomes
    active again while the task runs moves to a higher score and is seen again (the import is idempotent)."""
    shard = int(cursor.get("shard", 0))
    score = float(cursor.get("score", since_ms))
    skip = int(cursor.get("skip", 0))
    while shard < keys.index_shards:
        entries = await _range(client, keys.active_index(shard), score, skip, batch_size)
        ids = [member for member, _ in entries]
        if entries:
            last = entries[-1][1]
            same = sum(1 for _, value in entries if value == last)
            if last == score:
                skip += same
            else:
                score, skip = last, same
        if len(entries) < batch_size:
            shard, score, skip = shard + 1, float(since_ms), 0
        if ids or shard >= keys.index_shards:
            yield ids, {"shard": shard, "score": score, "skip": skip}


@redis_boundary
async def _range(
    client: RedisClient, key: str, score: float, skip: int, count: int
) -> list[tuple[str, float]]:
    entries = await client.zrangebyscore(key, score, "+inf", start=skip, num=count, withscores=True)
    return [(str(member), float(value)) for member, value in entries]


@redis_boundary
async def count_incremental(client: RedisClient, keys: KeySpace, since_ms: int) -> int:
    """How many sessions were active at or after ``since_ms``."""
    async with client.pipeline(transaction=False) as pipe:
        for key in keys.active_indexes():
            pipe.zcount(key, since_ms, "+inf")
        return sum(int(count) for count in await pipe.execute())


async def selective_batches(
    tasks: TaskStore, task_id: str, total: int, batch_size: int, cursor: Mapping[str, Any]
) -> AsyncIterator[Batch]:
    """The task's id list, page by page."""
    offset = int(cursor.get("offset", 0))
    while offset < total:
        ids = await tasks.ids(task_id, offset, batch_size)
        if not ids:
            return
        offset += len(ids)
        yield ids, {"offset": offset}
