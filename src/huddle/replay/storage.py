"""ReplayStorage: the Redis side of recordings (binary client; keys from ``KeySpace``).

A recording is three keys in its own hash slot (``{<replay id>}``): ``meta`` (hash), ``segments`` (list of
frame blocks) and ``segidx`` (list: where each block starts, for seeking). Every write of a batch is one
MULTI on that slot, so a reader never sees frames without the meta that counts them. The index of recordings
is a sharded sorted set (replay id -> start ms): listing merges the shards, never KEYS or SCAN.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import ResponseError

from ..backend.connection import RedisClient
from ..core.keys import KeySpace
from ..core.store import redis_boundary
from ..errors import ReplayIntegrityError
from .meta import index_problem

PARTS = ("meta", "segments", "segidx")
P = ParamSpec("P")
T = TypeVar("T")


def wrong_type_is_corruption(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """A recording key of the wrong Redis type (WRONGTYPE) is a corrupt recording, not a crash."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await func(*args, **kwargs)
        except ResponseError as exc:
            if "WRONGTYPE" in str(exc):
                raise ReplayIntegrityError(
                    f"a key of the recording holds the wrong Redis type: {exc}", reason="wrong key type"
                ) from exc
            raise

    return wrapper


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class ReplayStorage:
    """Reads and writes recordings on a client that returns bytes."""

    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys

    def _key(self, replay_id: str, part: str) -> str:
        return self.keys.replay(replay_id, part)

    def _all(self, replay_id: str) -> list[str]:
        return [self._key(replay_id, part) for part in PARTS]

    @redis_boundary
    async def create(
        self, replay_id: str, fields: Mapping[str, str | int], started_ms: int, retention_ms: int
    ) -> bool:
        """Create a recording's meta (False if the id is taken) and index it."""
        meta = self._key(replay_id, "meta")
        if not await self.client.hsetnx(meta, "sid", str(fields["sid"])):
            return False
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(meta, mapping=dict(fields))
            pipe.pexpire(meta, retention_ms)
            await pipe.execute()
        await self.client.zadd(self.keys.replay_index_for(replay_id), {replay_id: started_ms})
        return True

    @redis_boundary
    async def write_batch(
        self,
        replay_id: str,
        *,
        replace_last: bytes | None,
        new_segments: Sequence[bytes],
        new_index: Sequence[Mapping[str, Any]],
        fields: Mapping[str, str | int],
        retention_ms: int,
    ) -> None:
        """Atomically rewrite the open block, append new blocks and their seek entries, update the meta."""
        meta, segments, segidx = self._all(replay_id)
        async with self.client.pipeline(transaction=True) as pipe:
            if replace_last is not None:
                pipe.lset(segments, -1, replace_last)
            if new_segments:
                pipe.rpush(segments, *new_segments)
            if new_index:
                pipe.rpush(segidx, *(json.dumps(entry, separators=(",", ":")) for entry in new_index))
            pipe.hset(meta, mapping=dict(fields))
            for key in (meta, segments, segidx):
                pipe.pexpire(key, retention_ms)
            await pipe.execute()

    @redis_boundary
    async def set_fields(self, replay_id: str, fields: Mapping[str, str | int], retention_ms: int) -> None:
        """Update meta fields of a recording (and keep its retention, so nothing outlives it)."""
        meta = self._key(replay_id, "meta")
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(meta, mapping=dict(fields))
            pipe.pexpire(meta, retention_ms)
            await pipe.execute()

    @wrong_type_is_corruption
    @redis_boundary
    async def import_recording(
        self,
        replay_id: str,
        fields: Mapping[str, str | int],
        segments: Sequence[bytes],
        index: Sequence[Mapping[str, Any]],
        started_ms: int,
        retention_ms: int,
    ) -> bool:
        """Write a whole recording in one MULTI (False, writing nothing, if the id is taken)."""
        meta, seg_key, idx_key = self._all(replay_id)
        if not await self.client.hsetnx(meta, "sid", str(fields["sid"])):
            return False
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(seg_key, idx_key)
            pipe.hset(meta, mapping=dict(fields))
            for start in range(0, len(segments), 256):
                pipe.rpush(seg_key, *segments[start : start + 256])
            for start in range(0, len(index), 1024):
                pipe.rpush(
                    idx_key, *(json.dumps(e, separators=(",", ":")) for e in index[start : start + 1024])
                )
            for key in (meta, seg_key, idx_key):
                pipe.pexpire(key, retention_ms)
            await pipe.execute()
        await self.client.zadd(self.keys.replay_index_for(replay_id), {replay_id: started_ms})
        return True

    @wrong_type_is_corruption
    @redis_boundary
    async def read_meta(self, replay_id: str) -> dict[str, str] | None:
        """The meta hash as text, or None if the recording does not exist."""
        raw = await self.client.hgetall(self._key(replay_id, "meta"))
        if not raw:
            return None
        return {_text(k): _text(v) for k, v in raw.items()}

    @wrong_type_is_corruption
    @redis_boundary
    async def read_metas(self, replay_ids: Sequence[str]) -> list[dict[str, str] | None]:
        """Meta hashes of several recordings in one round trip."""
        if not replay_ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for replay_id in replay_ids:
                pipe.hgetall(self._key(replay_id, "meta"))
            replies = await pipe.execute()
        return [{_text(k): _text(v) for k, v in raw.items()} if raw else None for raw in replies]

    @wrong_type_is_corruption
    @redis_boundary
    async def read_index(self, replay_id: str) -> list[dict[str, Any]]:
        """Seek entries: one per block (first frame index ``i``, seq ``q``, time ``t``, chain before ``p``)."""
        entries = await self.client.lrange(self._key(replay_id, "segidx"), 0, -1)
        try:
            index = [json.loads(entry) for entry in entries]
        except ValueError:
            index = [None]  # reported below as a bad entry
        problem = index_problem(index)
        if problem is not None:
            raise ReplayIntegrityError(f"the recording's seek index is corrupt: {problem}", reason=problem)
        return index

    @wrong_type_is_corruption
    @redis_boundary
    async def read_segments(self, replay_id: str, start: int, stop: int) -> list[bytes]:
        """Blocks ``start..stop`` (inclusive, like LRANGE)."""
        blobs: list[bytes] = await self.client.lrange(self._key(replay_id, "segments"), start, stop)
        return blobs

    @wrong_type_is_corruption
    @redis_boundary
    async def delete(self, replay_id: str) -> bool:
        """Delete a recording and its index entry; True if it existed."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.delete(*self._all(replay_id))
            pipe.zrem(self.keys.replay_index_for(replay_id), replay_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    @redis_boundary
    async def unindex(self, replay_ids: Sequence[str]) -> None:
        """Drop index entries (of recordings that expired)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for replay_id in replay_ids:
                pipe.zrem(self.keys.replay_index_for(replay_id), replay_id)
            await pipe.execute()

    @redis_boundary
    async def newest(self, count: int | None) -> list[tuple[str, int]]:
        """(replay id, start ms) newest first, merged over the index shards; at most ``count``."""
        async with self.client.pipeline(transaction=False) as pipe:
            for key in self.keys.replay_indexes():
                if count is None:
                    pipe.zrevrange(key, 0, -1, withscores=True)
                else:
                    pipe.zrevrange(key, 0, count - 1, withscores=True)
            shards = await pipe.execute()
        merged = [(_text(member), int(score)) for shard in shards for member, score in shard]
        merged.sort(key=lambda item: (item[1], item[0]), reverse=True)
        return merged if count is None else merged[:count]

    @redis_boundary
    async def started_before(self, cutoff_ms: int) -> list[str]:
        """Ids of recordings that started before ``cutoff_ms``."""
        async with self.client.pipeline(transaction=False) as pipe:
            for key in self.keys.replay_indexes():
                pipe.zrangebyscore(key, "-inf", f"({cutoff_ms}")
            shards = await pipe.execute()
        return [_text(member) for shard in shards for member in shard]
