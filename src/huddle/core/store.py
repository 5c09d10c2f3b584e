"""SessionStore: typed access to Redis (scripts and reads) for sessions. No business rules live here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..backend.connection import RedisClient, is_cluster, ready, server_version
from ..models import (
    Checkpoint,
    Event,
    FailureSnapshot,
    FailureSnapshotRef,
    SessionDocument,
    ms_to_datetime,
)
from .boundary import REDIS_DOWN, boundary_error, permission_error, redis_boundary
from .keys import KeySpace, SessionKeys
from .parse import corrupt, parse_checkpoint, parse_event, parse_failure, parse_int, parse_session
from .scripts import Scripts

__all__ = ["REDIS_DOWN", "boundary_error", "parse_event", "permission_error", "redis_boundary"]
"""Re-exported: other modules take the boundary and the event parser from here."""


Fingerprinted = tuple[Event, int]
"""An event and a fingerprint of its stored entry (every field, the retry token included): two servers whose
histories split hold different entries under one seq, and this tells them apart without serializing the event."""


def fingerprinted(session_id: str, entries: list[Any], key: str) -> list[Fingerprinted]:
    """Stream entries as (event, fingerprint) pairs."""
    return [
        (parse_event(session_id, entry_id, fields, key), hash(tuple(fields.items())))
        for entry_id, fields in entries
    ]


@dataclass(frozen=True, slots=True)
class EmitResult:
    """What the emit script did."""

    seq: int
    index_due: bool
    checkpoint_id: str | None
    duplicate: bool
    failure_snapshot_id: str | None
    last_seq: int
    at_ms: int
    replicas_acked: int | None = None
    """With ``min_replicas``: how many replicas confirmed the write (WAIT); None when not asked."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What the batch emit script did."""

    seqs: list[int]
    index_due: bool
    checkpoint_id: str | None
    duplicate: bool
    failure_snapshot_ids: list[str]
    last_seq: int
    at_ms: int


class SessionStore:
    """Scripts and reads for sessions and the global indexes, on one client."""

    def __init__(self, client: RedisClient, keyspace: KeySpace) -> None:
        self.client = client
        self.keys = keyspace
        self.scripts = Scripts(client)
        self._publish_command: str | None = None
        self._publish_lock = asyncio.Lock()  # one server question, however many emits start at once

    @redis_boundary
    async def load(self) -> None:
        """PING, then load every script."""
        await self.client.ping()
        await self.scripts.load(self.client)

    @redis_boundary
    async def scripts_loaded(self) -> bool:
        """True if the server has every script cached."""
        return await self.scripts.loaded(self.client)

    # -- mutations (one script each) ------------------------------------------------------------------------
    @redis_boundary
    async def create(self, keys: SessionKeys, args: list[str | int]) -> tuple[int, int, bool]:
        """Run create.lua; returns (seq, created_ms, duplicate)."""
        seq, created, duplicate = await self.scripts.run("create", keys.all, args)
        return int(seq), int(created), bool(duplicate)

    @redis_boundary
    async def join(self, keys: SessionKeys, args: list[str | int]) -> tuple[int, bool]:
        """Run join.lua; returns (seq, joined)."""
        seq, joined = await self.scripts.run("join", keys.all, args)
        return int(seq), bool(joined)

    @redis_boundary
    async def leave(self, keys: SessionKeys, args: list[str | int]) -> tuple[int, bool, int]:
        """Run leave.lua; returns (seq, left, remaining members)."""
        seq, left, remaining = await self.scripts.run("leave", keys.all, args)
        return int(seq), bool(left), int(remaining)

    @redis_boundary
    async def complete(self, keys: SessionKeys, args: list[str | int]) -> tuple[int, bool]:
        """Run complete.lua; returns (seq, completed now)."""
        seq, done = await self.scripts.run("complete", keys.all, args)
        return int(seq), bool(done)

    @redis_boundary
    async def emit_batch(self, keys: SessionKeys, args: list[str | int]) -> BatchResult:
        """Run emit_batch.lua (the publish command goes in as ARGV[14])."""
        args[13] = self._publish_command or await self.publish_command()
        first, count, due, cp_id, dup, failure_ids, last, now = await self.scripts.run(
            "emit_batch", keys.emit, args
        )
        first, count = int(first), int(count)
        return BatchResult(
            list(range(first, first + count)), bool(due), cp_id or None, bool(dup),
            [str(fid) for fid in failure_ids or ()], int(last), int(now),
        )  # fmt: skip

    async def publish_command(self) -> str:
        """``SPUBLISH`` on a Redis Cluster of 7.0+ (sharded pub/sub keeps notices on the slot's node), else
        ``PUBLISH``; asked once per store."""
        async with self._publish_lock:
            if self._publish_command is None:
                sharded = is_cluster(await ready(self.client)) and await server_version(self.client) >= (7, 0)
                self._publish_command = "SPUBLISH" if sharded else "PUBLISH"
        return self._publish_command

    @redis_boundary
    async def checkpoint(self, keys: SessionKeys, args: list[str | int]) -> tuple[str, int, bool, str | None]:
        """Run checkpoint.lua; returns (checkpoint id, seq, created, failure snapshot id)."""
        cp_id, seq, created, failure_id = await self.scripts.run("checkpoint", keys.all, args)
        return str(cp_id), int(seq), bool(created), failure_id or None

    # -- reads ----------------------------------------------------------------------------------------------
    @redis_boundary
    async def get_session(self, session_id: str) -> SessionDocument | None:
        """The session's current document, read in one MULTI (a consistent view), or None."""
        keys = self.keys.session(session_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.meta).hgetall(keys.agents).pttl(keys.meta)
            meta, agents, pttl = await pipe.execute()
        if not meta:
            return None
        return parse_session(session_id, meta, agents, int(pttl), (keys.meta, keys.agents))

    @redis_boundary
    async def exists(self, session_ids: Iterable[str]) -> dict[str, bool]:
        """Which of these sessions exist (one pipelined round trip)."""
        ids = list(session_ids)
        if not ids:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.exists(self.keys.session(sid).meta)
            found = await pipe.execute()
        return {sid: bool(hit) for sid, hit in zip(ids, found, strict=True)}

    @redis_boundary
    async def get_events(
        self, session_id: str, from_seq: int, to_seq: int | None, limit: int | None
    ) -> list[Event]:
        """Events with from_seq <= seq <= to_seq, oldest first."""
        end = f"0-{to_seq}" if to_seq is not None else "+"
        key = self.keys.session(session_id).events
        entries = await self.client.xrange(key, f"0-{from_seq}", end, count=limit)
        return [parse_event(session_id, entry_id, fields, key) for entry_id, fields in entries]

    @redis_boundary
    async def read_events_after_checked(
        self, session_id: str, after_seq: int, count: int, block_ms: int
    ) -> tuple[Fingerprinted | None, list[Fingerprinted]]:
        """(the event at ``after_seq`` as stored now, or None; events with seq > after_seq, waiting up to
        ``block_ms``), in one round trip, so a retry on another server (failover) shows that server's event.
        Each comes with a fingerprint of its stored fields (see ``fingerprinted``)."""
        stream = self.keys.session(session_id).events
        pipe = self.client.pipeline(transaction=False)
        pipe.xrange(stream, f"0-{after_seq}", f"0-{after_seq}", count=1)
        pipe.xread({stream: f"0-{after_seq}"}, count=count, block=block_ms)
        at, reply = await pipe.execute()
        current = fingerprinted(session_id, at, stream)[0] if at else None
        if not reply:
            return current, []
        entries = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        return current, fingerprinted(session_id, entries, stream)

    @redis_boundary
    async def read_window_and_after(
        self, session_id: str, start: int, after_seq: int, count: int
    ) -> tuple[tuple[int, int] | None, list[Fingerprinted], list[Fingerprinted]]:
        """((first, last seq) or None, events start..after_seq, up to ``count`` events after it), all read in one
        pipeline on one connection: one server's view even while two servers both act as master (split brain)."""
        keys = self.keys.session(session_id)
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(keys.meta, ["first", "seq", "status"])
        pipe.xrange(keys.events, f"0-{start}", f"0-{after_seq}")
        pipe.xrange(keys.events, f"({'0-' + str(after_seq)}", "+", count=count)
        (first, last, status), window, after = await pipe.execute()
        bounds = None
        if last is not None:
            bounds = (
                parse_int(session_id, keys.meta, "first", first, 1),
                parse_int(session_id, keys.meta, "seq", last, 0),
            )
        elif status is not None:
            raise corrupt(session_id, keys.meta, "seq")
        return (
            bounds,
            fingerprinted(session_id, window, keys.events),
            fingerprinted(session_id, after, keys.events),
        )

    @redis_boundary
    async def first_and_last_seq(self, session_id: str) -> tuple[int, int] | None:
        """(first seq still in the log, last seq) or None if the session does not exist."""
        key = self.keys.session(session_id).meta
        first, last, status = await self.client.hmget(key, ["first", "seq", "status"])
        if last is None:
            if status is not None:  # a session without its seq
                raise corrupt(session_id, key, "seq")
            return None
        return parse_int(session_id, key, "first", first, 1), parse_int(session_id, key, "seq", last, 0)

    @redis_boundary
    async def status_and_seq(self, session_id: str) -> tuple[str, int] | None:
        """(status, last seq) of the session, or None if it does not exist."""
        key = self.keys.session(session_id).meta
        status, seq = await self.client.hmget(key, ["status", "seq"])
        if status is None:
            if seq is not None:  # a session without its status
                raise corrupt(session_id, key, "status")
            return None
        return status, parse_int(session_id, key, "seq", seq, 0)

    @redis_boundary
    async def statuses(self, session_ids: Iterable[str]) -> dict[str, str | None]:
        """Each session's status (None: it does not exist), in one pipelined round trip."""
        ids = list(session_ids)
        async with self.client.pipeline(transaction=False) as pipe:
            for sid in ids:
                pipe.hget(self.keys.session(sid).meta, "status")
            found = await pipe.execute(raise_on_error=False)
        return {sid: value if isinstance(value, str) else None for sid, value in zip(ids, found, strict=True)}

    @redis_boundary
    async def get_checkpoints(self, session_id: str, limit: int | None = None) -> list[Checkpoint]:
        """The session's checkpoints, newest first."""
        key = self.keys.session(session_id).checkpoints
        entries = await self.client.xrevrange(key, "+", "-", count=limit)
        return [parse_checkpoint(session_id, entry_id, fields, key) for entry_id, fields in entries]

    @redis_boundary
    async def get_checkpoint(self, session_id: str, seq: int) -> Checkpoint | None:
        """One checkpoint by its seq."""
        key = self.keys.session(session_id).checkpoints
        entries = await self.client.xrange(key, f"0-{seq}", f"0-{seq}")
        return parse_checkpoint(session_id, entries[0][0], entries[0][1], key) if entries else None

    @redis_boundary
    async def get_failure_snapshots(self, session_id: str, limit: int | None = None) -> list[FailureSnapshot]:
        """The session's failure snapshots, newest first."""
        key = self.keys.session(session_id).failures
        entries = await self.client.xrevrange(key, "+", "-", count=limit)
        return [parse_failure(session_id, entry_id, fields, key) for entry_id, fields in entries]

    @redis_boundary
    async def get_failure_snapshot(self, session_id: str, snapshot_id: str) -> FailureSnapshot | None:
        """One failure snapshot by its id."""
        key = self.keys.session(session_id).failures
        entries = await self.client.xrange(key, snapshot_id, snapshot_id)
        return parse_failure(session_id, entries[0][0], entries[0][1], key) if entries else None

    # -- global indexes (outside the session slot; updated right after the script) --------------------------
    @redis_boundary
    async def index_session(
        self, session_id: str, at_ms: int, *, agent_joined: str | None = None, agent_left: str | None = None
    ) -> None:
        """Record activity in the active index and membership in the agent index (one round trip)."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.active_index_for(session_id), {session_id: at_ms})
            if agent_joined is not None:
                pipe.zadd(self.keys.agent_sessions(agent_joined), {session_id: at_ms})
            if agent_left is not None:
                pipe.zrem(self.keys.agent_sessions(agent_left), session_id)
            await pipe.execute()

    @redis_boundary
    async def touch_active(self, session_id: str, at_ms: int) -> None:
        """Move the session's activity time forward in the active index."""
        await self.client.zadd(self.keys.active_index_for(session_id), {session_id: at_ms}, gt=True)

    @redis_boundary
    async def unindex_session(self, session_id: str, agents: Iterable[str]) -> None:
        """Drop a session from the active index and from the given agents' indexes."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zrem(self.keys.active_index_for(session_id), session_id)
            for agent in agents:
                pipe.zrem(self.keys.agent_sessions(agent), session_id)
            await pipe.execute()

    @redis_boundary
    async def unindex_session_agent(self, session_id: str, agent_id: str) -> None:
        """Drop a session from one agent's index."""
        await self.client.zrem(self.keys.agent_sessions(agent_id), session_id)

    @redis_boundary
    async def index_failure(self, session_id: str, snapshot_id: str) -> None:
        """Add a failure snapshot to the failure index."""
        created = int(snapshot_id.split("-")[0])
        await self.client.zadd(
            self.keys.failure_index_for(session_id), {f"{session_id}/{snapshot_id}": created}
        )

    @redis_boundary
    async def active_score(self, session_id: str) -> float | None:
        """The session's last recorded activity (ms) in the active index, if any."""
        score = await self.client.zscore(self.keys.active_index_for(session_id), session_id)
        return float(score) if score is not None else None

    @redis_boundary
    async def read_index(
        self, keys: list[str], min_score: float | str = "-inf", limit: int | None = None
    ) -> list[tuple[str, float]]:
        """Merge sharded sorted sets: (member, score) newest first, at most ``limit``."""
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                if limit is None:
                    pipe.zrevrangebyscore(key, "+inf", min_score, withscores=True)
                else:
                    pipe.zrevrangebyscore(key, "+inf", min_score, start=0, num=limit, withscores=True)
            shards = await pipe.execute()
        merged = [(str(member), float(score)) for shard in shards for member, score in shard]
        merged.sort(key=lambda item: item[1], reverse=True)
        return merged[:limit] if limit is not None else merged

    @redis_boundary
    async def failure_refs(self, limit: int | None) -> list[FailureSnapshotRef]:
        """Failure snapshots from the index, newest first."""
        refs = []
        for member, score in await self.read_index(self.keys.failure_indexes(), limit=limit):
            session_id, _, snapshot_id = member.rpartition("/")
            refs.append(
                FailureSnapshotRef(
                    session_id=session_id, snapshot_id=snapshot_id, created_at=ms_to_datetime(int(score))
                )
            )
        return refs
