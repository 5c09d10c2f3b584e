"""Which sessions a task moves, in batches with a resumable cursor (never all ids in memory at once).

- full: SCAN of the namespace's session meta keys (on a cluster: of every primary, one after the other).
  Completed sessions leave the activity index, so only a scan finds every session; (node, SCAN cursor) is also
  exactly the resumable position a task needs.
- incremental: the sharded activity index, by score (last activity) from ``since``; never a scan.
- selective: the task's own id list, stored with the task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..backend.connection import RedisClient, is_cluster
from ..core.keys import KeySpace
from ..core.store import redis_boundary
from ..errors import RedisUnavailableError
from .tasks import TaskStore

Batch = tuple[list[str], dict[str, Any]]


async def full_batches(
    client: RedisClient, keys: KeySpace, batch_size: int, cursor: Mapping[str, Any]
) -> AsyncIterator[Batch]:
    """Every session of the namespace, from a SCAN cursor; on a cluster, every primary in turn.

    The cursor is ``{"node": i, "slot": s, "run": id, "scan": pos, "done": bool}``: the i-th primary in the
    order of the first slot each serves (``s``), that server's ``run_id`` and the SCAN position on it. A SCAN
    position only means something to the very server process that returned it (hash seeds differ between
    processes), so when the node at ``i`` now serves other slots (resharding) or is another process (failover,
    restart), its scan starts over: sessions may be looked at twice (the import is idempotent), never skipped.
    Cursors without ``node`` (older tasks) are standalone ones and are taken as they are."""
    if cursor.get("done"):
        return
    nodes = await _nodes(client)
    runs: dict[int, str] = {}

    async def run_of(i: int) -> str:
        if i not in runs:
            runs[i] = await _run_id(client, nodes[i][1])
        return runs[i]

    index = int(cursor.get("node", 0))
    position = int(cursor.get("scan", 0))
    if position and index < len(nodes):
        moved = "slot" in cursor and cursor["slot"] != nodes[index][0]
        if moved or ("run" in cursor and cursor["run"] != await run_of(index)):
            position = 0
    ids: list[str] = []
    while index < len(nodes):
        node = nodes[index][1]
        run = await run_of(index)
        position, found = await _scan(client, node, position, keys.session_pattern(), batch_size)
        ids.extend(_session_ids(keys, found))
        if position == 0:
            index += 1
        if index >= len(nodes):
            yield ids, {"node": index, "scan": 0, "done": True}
            return
        if len(ids) >= batch_size:
            if position == 0:
                run = await run_of(index)
            yield ids, {"node": index, "slot": nodes[index][0], "run": run, "scan": position, "done": False}
            ids = []


def _session_ids(keys: KeySpace, found: list[str]) -> list[str]:
    """Session ids of the meta keys found (anything else the pattern could match is left out)."""
    out: list[str] = []
    for key in found:
        sid = keys.session_id_from_meta_key(key)
        if keys.session(sid).meta == key:
            out.append(sid)
    return out


async def _nodes(client: RedisClient) -> list[tuple[int, Any]]:
    """The nodes to scan, in a stable order: ``(first slot, node)`` per cluster primary; standalone: one."""
    if not is_cluster(client):
        return [(0, None)]
    await _ready(client)
    first: dict[str, tuple[int, Any]] = {}
    for slot, serving in client.nodes_manager.slots_cache.items():
        if serving:
            primary = serving[0]
            if primary.name not in first or slot < first[primary.name][0]:
                first[primary.name] = (slot, primary)
    if not first:
        raise RedisUnavailableError("the Redis Cluster reports no primary serving any slot")
    return sorted(first.values(), key=lambda item: item[0])


@redis_boundary
async def _ready(client: RedisClient) -> None:
    if client._initialize:  # the slot map is built on first use
        await client.initialize()


@redis_boundary
async def _run_id(client: RedisClient, node: Any) -> str:
    """The server process's ``run_id`` (a new one after every restart)."""
    info = await (client.info("server") if node is None else client.info("server", target_nodes=node))
    return str(info["run_id"])


@redis_boundary
async def _scan(
    client: RedisClient, node: Any, position: int, pattern: str, count: int
) -> tuple[int, list[str]]:
    if node is None:
        position, found = await client.scan(position, match=pattern, count=count, _type="hash")
        return int(position), [str(key) for key in found]
    positions, found = await client.scan(
        position, match=pattern, count=count, _type="hash", target_nodes=node
    )
    return int(positions[node.name]), [str(key) for key in found]


async def count_full(client: RedisClient, keys: KeySpace, batch_size: int) -> int:
    """How many sessions the namespace holds (a counting scan of every primary; nothing is kept)."""
    total = 0
    async for ids, _ in full_batches(client, keys, max(batch_size, 500), {}):
        total += len(ids)
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
