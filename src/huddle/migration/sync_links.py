"""Sync links and their status records on the source, visible from every process.

Each link (one session synced to one instance by one process) has a hash in the session's slot,
``<ns>:{sid}:sync:<instance>/<owner>``, that expires ``sync_status_ttl`` seconds after its owner's last
heartbeat, and a member ``<sid>/<instance>/<owner>`` in the sharded registry ``<ns>:idx:{<ns>.syncs.<n>}``
(score: last heartbeat, ms). Readers list the registry (no KEYS, no SCAN) and drop members whose hash has
expired, so the links of a process that died disappear on their own.

Writes are coalesced: a sync only marks its link dirty; one writer task per process writes the dirty links
in one pipeline at most every ``MIN_WRITE_GAP`` seconds, and every link at each heartbeat (a third of the TTL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.exceptions import RedisError

from ..backend.connection import RedisClient, ready
from ..core.keys import KeySpace
from ..core.store import redis_boundary
from ..errors import HuddleError
from .models import CrossInstanceSession, SyncMode

log = logging.getLogger("huddle.migration.sync")

MIN_WRITE_GAP = 0.25
"""Seconds between two status writes of the same process (so of the same link)."""
REGISTRY_TTL_MS = 86_400_000
"""A registry shard nobody heartbeats into any more disappears after a day."""


@dataclass(slots=True, eq=False)
class SyncLink:
    """One session kept in sync with one instance by this process: status counters and runtime state."""

    session_id: str
    instance: str
    mode: SyncMode
    target: str | None = None
    status: str = "idle"
    last_synced_seq: int = 0
    last_sync_at: datetime | None = None
    syncs: int = 0
    events_applied: int = 0
    full_copies: int = 0
    errors: int = 0
    last_error: str | None = None
    heartbeat_at: datetime | None = None
    runner: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    retry_at: float = 0.0
    backoff: float = 0.05
    seen: int = 0
    """The highest source seq the real-time reader has seen for this link (a sync may be on its way to it)."""
    position: tuple[int, str | None, str | None] | None = None
    """What the last successful sync left on the target (seq, checkpoint id, failure id); None: ask the target."""

    def view(self, owner: str | None) -> CrossInstanceSession:
        """The public status of the link."""
        return CrossInstanceSession(
            session_id=self.session_id,
            target_instance=self.instance,
            sync_mode=self.mode,
            status=self.status,
            last_synced_seq=self.last_synced_seq,
            last_sync_at=self.last_sync_at,
            syncs=self.syncs,
            events_applied=self.events_applied,
            full_copies=self.full_copies,
            errors=self.errors,
            last_error=self.last_error,
            target=self.target,
            owner=owner,
            heartbeat_at=self.heartbeat_at,
        )

    def record(self, owner: str, now_ms: int) -> dict[str, str | int]:
        """The hash fields stored on the source."""
        at = self.last_sync_at
        return {
            "session": self.session_id,
            "instance": self.instance,
            "target": self.target or "",
            "mode": self.mode,
            "status": self.status,
            "seq": self.last_synced_seq,
            "at": int(at.timestamp() * 1000) if at is not None else "",
            "syncs": self.syncs,
            "applied": self.events_applied,
            "full": self.full_copies,
            "errors": self.errors,
            "err": self.last_error or "",
            "owner": owner,
            "hb": now_ms,
        }


def _ms(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(value) / 1000, UTC) if value else None


def parse_record(fields: dict[str, str]) -> CrossInstanceSession:
    """A status hash read back from the source."""
    return CrossInstanceSession(
        session_id=fields["session"],
        target_instance=fields["instance"],
        sync_mode=fields["mode"],
        status=fields["status"],
        last_synced_seq=int(fields["seq"]),
        last_sync_at=_ms(fields.get("at")),
        syncs=int(fields["syncs"]),
        events_applied=int(fields["applied"]),
        full_copies=int(fields["full"]),
        errors=int(fields["errors"]),
        last_error=fields.get("err") or None,
        target=fields.get("target") or None,
        owner=fields["owner"],
        heartbeat_at=_ms(fields.get("hb")),
    )


def link_name(instance: str, owner: str) -> str:
    """The per-link part of the status key (session ids and instance names never contain '/')."""
    return f"{instance}/{owner}"


class StatusBoard:
    """Writes this process's link statuses to the source (coalesced) and keeps them alive with heartbeats."""

    def __init__(self, client: RedisClient, keys: KeySpace, owner: str, ttl: float) -> None:
        self.client = client
        self.keys = keys
        self.owner = owner
        self.ttl_ms = int(ttl * 1000)
        self.heartbeat = ttl / 3
        self._links: set[SyncLink] = set()
        self._dirty: set[SyncLink] = set()
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.writes = 0
        """Pipelines written so far (the benchmark reports it)."""

    def track(self, link: SyncLink) -> None:
        """Start publishing ``link`` (written at the next flush)."""
        self._links.add(link)
        self.touch(link)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="huddle-sync-status")

    def touch(self, link: SyncLink) -> None:
        """The link's status changed: write it soon (at most once per ``MIN_WRITE_GAP``)."""
        if link in self._links:
            self._dirty.add(link)
            self._wake.set()

    async def flush(self) -> None:
        """Write every dirty link now (errors are logged: the heartbeat writes them again)."""
        batch = list(self._dirty)
        self._dirty.clear()
        await self._write(batch)

    async def forget(self, links: Iterable[SyncLink]) -> None:
        """Stop publishing these links and delete their records (best effort: they expire anyway)."""
        gone = [link for link in links if link in self._links]
        for link in gone:
            self._links.discard(link)
            self._dirty.discard(link)
        if not gone:
            return
        async with self._write_lock:
            try:
                await self._delete(gone)
            except (HuddleError, RedisError, OSError) as exc:
                log.warning("could not delete %d sync status record(s): %s (they expire)", len(gone), exc)

    async def close(self) -> None:
        """Stop the writer and delete every record of this process (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.forget(list(self._links))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.heartbeat
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races the event.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(next_beat - loop.time(), 0)):
                    await self._wake.wait()
            self._wake.clear()
            if loop.time() >= next_beat:
                self._dirty.clear()
                await self._write(list(self._links))
                next_beat = loop.time() + self.heartbeat
            elif self._dirty:
                await self.flush()
            await asyncio.sleep(MIN_WRITE_GAP)

    async def _write(self, batch: list[SyncLink]) -> None:
        async with self._write_lock:
            batch = [link for link in batch if link in self._links]
            if not batch:
                return
            try:
                await self._hset(batch)
            except (HuddleError, RedisError, OSError) as exc:
                self._dirty.update(link for link in batch if link in self._links)
                log.warning("could not write %d sync status record(s): %s", len(batch), exc)

    @redis_boundary
    async def _hset(self, batch: list[SyncLink]) -> None:
        now = time.time()
        now_ms = int(now * 1000)
        shards: set[str] = set()
        self.client = await ready(self.client)
        async with self.client.pipeline(transaction=False) as pipe:
            for link in batch:
                key = self.keys.sync_link(link.session_id, link_name(link.instance, self.owner))
                shard = self.keys.sync_index_for(link.session_id)
                shards.add(shard)
                pipe.hset(key, mapping=link.record(self.owner, now_ms))
                pipe.pexpire(key, self.ttl_ms)
                pipe.zadd(shard, {f"{link.session_id}/{link.instance}/{self.owner}": now_ms})
            for shard in shards:
                pipe.pexpire(shard, REGISTRY_TTL_MS)
            await pipe.execute()
        self.writes += 1
        beat = datetime.fromtimestamp(now, UTC)
        for link in batch:
            link.heartbeat_at = beat

    @redis_boundary
    async def _delete(self, links: list[SyncLink]) -> None:
        self.client = await ready(self.client)
        async with self.client.pipeline(transaction=False) as pipe:
            for link in links:
                pipe.delete(self.keys.sync_link(link.session_id, link_name(link.instance, self.owner)))
                pipe.zrem(
                    self.keys.sync_index_for(link.session_id),
                    f"{link.session_id}/{link.instance}/{self.owner}",
                )
            await pipe.execute()


@redis_boundary
async def read_sync_links(
    client: RedisClient, keys: KeySpace, session_id: str | None = None
) -> list[CrossInstanceSession]:
    """Every live sync link recorded on this source (of ``session_id`` only, if given), of any process.

    Registry members whose status hash has expired (their owner stopped heartbeating) are removed."""
    client = await ready(client)
    shards = [keys.sync_index_for(session_id)] if session_id is not None else keys.sync_indexes()
    async with client.pipeline(transaction=False) as pipe:
        for shard in shards:
            pipe.zrange(shard, 0, -1)
        listed = await pipe.execute()
    members: list[tuple[str, str, str, str]] = []  # (shard, member, session id, link name)
    for shard, names in zip(shards, listed, strict=True):
        for member in names:
            sid, _, name = str(member).partition("/")
            if session_id is None or sid == session_id:
                members.append((shard, member, sid, name))
    if not members:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for _, _, sid, name in members:
            pipe.hgetall(keys.sync_link(sid, name))
        records = await pipe.execute()
    found: list[CrossInstanceSession] = []
    dead: list[tuple[str, str]] = []
    for (shard, member, _, _), fields in zip(members, records, strict=True):
        if fields:
            found.append(parse_record(fields))
        else:
            dead.append((shard, member))
    if dead:
        async with client.pipeline(transaction=False) as pipe:
            for shard, member in dead:
                pipe.zrem(shard, member)
            await pipe.execute()
    found.sort(key=lambda item: (item.session_id, item.target_instance, item.owner or ""))
    return found
