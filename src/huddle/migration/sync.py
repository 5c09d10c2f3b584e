"""Cross-instance sync: keep sessions of the source mirrored on other Redis instances.

The source's event stream is the truth. A sync reads the target's last seq, then the source's changes after
it (one MULTI), and applies them with import_session.lua in delta mode, which skips events the target already
has: applying twice, or after a reconnect, never duplicates. ``real-time`` blocks on the source stream
(XREAD) and syncs as soon as events arrive; ``periodic`` syncs every ``sync_interval``; ``manual`` only when
``sync_session`` is called. A target that lost the session, or fell behind the source's trimming, gets a full
copy instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.exceptions import RedisError

from ..connection import RedisClient, create_client
from ..errors import HuddleError, InvalidMigrationRequestError, SyncError
from ..ids import check_id
from ..keys import KeySpace
from ..store import redis_boundary
from .config import MigrationConfig
from .copier import Exporter, Importer, ImportResult, read_delta
from .models import CrossInstanceSession, SyncMode

log = logging.getLogger("huddle.migration.sync")

SYNC_MODES: tuple[str, ...] = ("real-time", "periodic", "manual")
MAX_BACKOFF = 2.0


@dataclass(slots=True)
class _Link:
    session_id: str
    instance: str
    mode: SyncMode
    status: str = "idle"
    last_synced_seq: int = 0
    last_sync_at: datetime | None = None
    syncs: int = 0
    events_applied: int = 0
    full_copies: int = 0
    errors: int = 0
    last_error: str | None = None
    runner: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def view(self) -> CrossInstanceSession:
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
        )


class _SourceGone(SyncError):
    code = "sync_source_gone"


class CrossInstanceSync:
    """The sync links of one ``SessionMigration``: their tasks, target clients and status."""

    def __init__(
        self, config: MigrationConfig, source: RedisClient, source_keys: KeySpace, target_keys: KeySpace
    ):
        self.config = config
        self.source = source
        self.source_keys = source_keys
        self.target_keys = target_keys
        self._exporter = Exporter(source, source_keys)
        self._targets: dict[str, tuple[RedisClient, Importer]] = {}
        self._links: dict[tuple[str, str], _Link] = {}
        self._closed = False

    def _target(self, instance: str) -> tuple[RedisClient, Importer]:
        if instance not in self._targets:
            url = self.config.instance_url(instance)
            if url is None:
                known = ", ".join(sorted({"target", *self.config.instances}))
                raise InvalidMigrationRequestError(f"unknown target instance {instance!r}; known: {known}")
            client = create_client(self.config.redis_settings(url))
            self._targets[instance] = (client, Importer(client, self.target_keys))
        return self._targets[instance]

    async def setup(self, session_id: str, instance: str, mode: str) -> CrossInstanceSession:
        """Start syncing ``session_id`` to ``instance`` (the first sync runs now and must succeed)."""
        check_id(session_id)
        if mode not in SYNC_MODES:
            raise InvalidMigrationRequestError(
                f"sync_mode must be one of {', '.join(SYNC_MODES)}, not {mode!r}"
            )
        if self._closed:
            raise SyncError("the migration service is closed")
        self._target(instance)
        await self.stop(session_id, instance)
        link = _Link(session_id, instance, mode)  # type: ignore[arg-type]
        self._links[(session_id, instance)] = link
        try:
            await self._sync(link)
        except HuddleError:
            del self._links[(session_id, instance)]
            raise
        if mode == "real-time":
            link.runner = asyncio.create_task(self._follow(link), name=f"huddle-sync-{session_id}-{instance}")
        elif mode == "periodic":
            link.runner = asyncio.create_task(
                self._periodic(link), name=f"huddle-sync-{session_id}-{instance}"
            )
        return link.view()

    async def sync_session(self, session_id: str, instance: str | None = None) -> int:
        """Sync now (to every instance the session is linked to, or to ``instance``); returns events applied."""
        check_id(session_id)
        links = [
            link
            for (sid, name), link in self._links.items()
            if sid == session_id and instance in (None, name)
        ]
        if not links:
            link = _Link(session_id, instance or "target", "manual")
            self._target(link.instance)
            self._links[(session_id, link.instance)] = link
            links = [link]
        applied = 0
        for link in links:
            applied += await self._sync(link)
        return applied

    async def _sync(self, link: _Link) -> int:
        """One sync of one link; updates its status. Returns the number of events applied."""
        async with link.lock:
            try:
                applied = await self._apply(link)
            except _SourceGone as exc:
                link.status, link.last_error = "source_gone", exc.message
                raise
            except HuddleError as exc:
                link.errors += 1
                link.status, link.last_error = "retrying" if link.runner else "failed", exc.message
                raise
            link.syncs += 1
            link.events_applied += applied
            link.last_sync_at = datetime.now(UTC)
            link.status = "syncing" if link.mode != "manual" else "idle"
            return applied

    async def _apply(self, link: _Link) -> int:
        client, importer = self._target(link.instance)
        position = await _target_position(client, self.target_keys, link.session_id)
        if position is not None:
            seq, cp_last, fail_last = position
            delta = await read_delta(self.source, self.source_keys, link.session_id, seq, cp_last, fail_last)
            if delta is None:
                raise _SourceGone(f"session {link.session_id!r} no longer exists on the source")
            result = (await importer.write([delta], task_id="", policy="source-wins", marker_ttl_ms=0,
                                           backup=False, mode="delta"))[0]  # fmt: skip
            if isinstance(result, ImportResult):
                if result.outcome == "stale":
                    raise SyncError(
                        f"the target {link.instance!r} is ahead of the source (seq {result.target['seq']} > "
                        f"{delta.seq}): it was written by someone else"
                    )
                link.last_synced_seq = delta.seq
                return int(result.detail or 0)
            if not _needs_full_copy(result):
                raise result if isinstance(result, HuddleError) else SyncError(str(result))
        snapshots = await self._exporter.read([link.session_id])
        snap = snapshots[0]
        if snap is None:
            raise _SourceGone(f"session {link.session_id!r} no longer exists on the source")
        result = (
            await importer.write([snap], task_id="", policy="source-wins", marker_ttl_ms=0, backup=False)
        )[0]
        if not isinstance(result, ImportResult):
            raise result if isinstance(result, HuddleError) else SyncError(str(result))
        link.full_copies += 1
        link.last_synced_seq = snap.seq
        return snap.events

    async def _follow(self, link: _Link) -> None:
        """real-time: block on the source stream, sync whenever events arrive; retry through outages."""
        stream = self.source_keys.session(link.session_id).events
        block = min(self.config.sync_block_ms, int(self.config.socket_timeout * 1000) - 250)
        backoff = 0.05
        while True:
            try:
                await self.source.xread({stream: f"0-{link.last_synced_seq}"}, count=1, block=max(block, 10))
                await self._sync(link)
                backoff = 0.05
            except _SourceGone:
                return
            except (HuddleError, RedisError, OSError) as exc:
                link.status, link.last_error = "retrying", str(exc)
                log.warning("sync of %s to %s failed (%s); retrying", link.session_id, link.instance, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _periodic(self, link: _Link) -> None:
        """periodic: sync every ``sync_interval`` seconds."""
        while True:
            await asyncio.sleep(self.config.sync_interval)
            try:
                await self._sync(link)
            except _SourceGone:
                return
            except HuddleError as exc:
                log.warning("periodic sync of %s to %s failed: %s", link.session_id, link.instance, exc)

    def status(self, session_id: str, instance: str | None = None) -> CrossInstanceSession | None:
        """The link's status (the first linked instance if none is named)."""
        for (sid, name), link in self._links.items():
            if sid == session_id and instance in (None, name):
                return link.view()
        return None

    def list(self) -> list[CrossInstanceSession]:
        """Every link."""
        return [link.view() for link in self._links.values()]

    async def stop(self, session_id: str, instance: str | None = None) -> bool:
        """Stop syncing the session (to ``instance`` or everywhere); False if it was not linked."""
        keys = [key for key in self._links if key[0] == session_id and instance in (None, key[1])]
        for key in keys:
            link = self._links.pop(key)
            await _cancel(link.runner)
            link.status = "stopped"
        return bool(keys)

    async def close(self) -> None:
        """Stop every link and close the target clients (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for link in list(self._links.values()):
            await _cancel(link.runner)
            link.runner = None
            link.status = "stopped"
        for client, _ in self._targets.values():
            await client.aclose()
        self._targets.clear()


def _needs_full_copy(result: Exception) -> bool:
    text = str(result)
    return "sync_gap" in text or "sync_missing" in text


@redis_boundary
async def _target_position(
    client: RedisClient, keys: KeySpace, session_id: str
) -> tuple[int, str | None, str | None] | None:
    """(last seq, last checkpoint id, last failure id) of the target's copy, or None if it has none."""
    k = keys.session(session_id)
    async with client.pipeline(transaction=True) as pipe:
        pipe.hget(k.meta, "seq").xrevrange(k.checkpoints, "+", "-", count=1).xrevrange(
            k.failures, "+", "-", count=1
        )
        seq, cps, fails = await pipe.execute()
    if seq is None:
        return None
    return int(seq), (cps[0][0] if cps else None), (fails[0][0] if fails else None)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
