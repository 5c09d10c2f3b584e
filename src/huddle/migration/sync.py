"""Cross-instance sync: keep sessions of the source mirrored on other Redis instances.

The source's event stream is the truth. A sync reads the target's last seq, then the source's changes after
it (one MULTI), and applies them with import_session.lua in delta mode, which skips events the target already
has: applying twice, or after a reconnect, never duplicates. ``real-time`` follows the source stream (XREAD
BLOCK, or polling on a cluster; one reader for all links of the process, see ``sync_follower``) and syncs as
soon as events arrive; ``periodic`` syncs every ``sync_interval``; ``manual`` only when ``sync_session`` is
called. A target that lost the session, or fell behind the source's trimming, gets a full copy instead.

Every link's status is published on the source (``sync_links``), so any process can list every link.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from ..backend.connection import RedisClient, create_client, is_cluster
from ..config import mask_url
from ..core.keys import KeySpace
from ..core.store import redis_boundary
from ..errors import HuddleError, InvalidMigrationRequestError, SyncError, SyncSourceGoneError
from ..ids import check_id
from .config import MigrationConfig
from .copier import Exporter, Importer, ImportResult, Snapshot, read_delta
from .models import CrossInstanceSession
from .sync_follower import StreamFollower
from .sync_links import StatusBoard, SyncLink, read_sync_links

log = logging.getLogger("huddle.migration.sync")

SYNC_MODES: tuple[str, ...] = ("real-time", "periodic", "manual")


class CrossInstanceSync:
    """The sync links of one ``SessionMigration``: their tasks, target clients and published status."""

    def __init__(
        self,
        config: MigrationConfig,
        source: RedisClient,
        source_keys: KeySpace,
        target_keys: KeySpace,
        owner: str = "local",
    ):
        self.config = config
        self.source = source
        self.source_keys = source_keys
        self.target_keys = target_keys
        self.owner = owner
        self._exporter = Exporter(source, source_keys)
        self._targets: dict[str, tuple[RedisClient, Importer]] = {}
        self._links: dict[tuple[str, str], SyncLink] = {}
        self.board = StatusBoard(source, source_keys, owner, config.sync_status_ttl)
        self.follower = StreamFollower(
            source, source_keys, owner, self._block_ms(), self._sync, cluster=is_cluster(source)
        )
        self._closed = False

    def _block_ms(self) -> int:
        """XREAD BLOCK time: below the socket timeout, so a quiet stream is not taken for a dead server."""
        return max(min(self.config.sync_block_ms, int(self.config.socket_timeout * 1000) - 250), 10)

    def _target(self, instance: str) -> tuple[RedisClient, Importer]:
        if instance not in self._targets:
            url = self.config.instance_url(instance)
            if url is None:
                known = ", ".join(sorted({"target", *self.config.instances}))
                raise InvalidMigrationRequestError(f"unknown target instance {instance!r}; known: {known}")
            client = create_client(self.config.redis_settings(url))
            self._targets[instance] = (client, Importer(client, self.target_keys))
        return self._targets[instance]

    def _new_link(self, session_id: str, instance: str, mode: str) -> SyncLink:
        target = mask_url(self.config.instance_url(instance))
        return SyncLink(session_id, instance, mode, target=target)  # type: ignore[arg-type]

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
        link = self._new_link(session_id, instance, mode)
        self._links[(session_id, instance)] = link
        try:
            await self._sync(link)
        except HuddleError:
            del self._links[(session_id, instance)]
            raise
        self.board.track(link)
        await self.board.flush()  # visible to other processes as soon as setup returns
        name = f"huddle-sync-{session_id}-{instance}"
        if mode == "real-time":
            await self.follower.add(link)
        elif mode == "periodic":
            link.runner = asyncio.create_task(self._periodic(link), name=name)
        return link.view(self.owner)

    async def sync_session(self, session_id: str, instance: str | None = None) -> int:
        """Sync now (to every instance the session is linked to, or to ``instance``); returns events applied."""
        check_id(session_id)
        if self._closed:
            raise SyncError("the migration service is closed")
        links = [
            link
            for (sid, name), link in self._links.items()
            if sid == session_id and instance in (None, name)
        ]
        if not links:
            self._target(instance or "target")
            link = self._new_link(session_id, instance or "target", "manual")
            self._links[(session_id, link.instance)] = link
            self.board.track(link)
            links = [link]
        applied = 0
        for link in links:
            applied += await self._sync(link)
        return applied

    async def _sync(self, link: SyncLink) -> int:
        """One sync of one link; updates (and publishes) its status. Returns the number of events applied."""
        async with link.lock:
            try:
                applied = await self._apply(link)
            except SyncSourceGoneError as exc:
                link.status, link.last_error = "source_gone", exc.message
                raise
            except HuddleError as exc:
                link.errors += 1
                link.status, link.last_error = "retrying" if link.mode != "manual" else "failed", exc.message
                raise
            finally:
                self.board.touch(link)
            link.syncs += 1
            link.events_applied += applied
            link.last_sync_at = datetime.now(UTC)
            link.status = "syncing" if link.mode != "manual" else "idle"
            return applied

    async def _apply(self, link: SyncLink) -> int:
        client, importer = self._target(link.instance)
        # After a successful sync the target's position is known; the delta script still checks it (a target
        # that lost data reports a gap and gets a full copy, one that moved on alone is 'stale'), so only a
        # failed or first sync pays the round trip to read it.
        position = link.position or await _target_position(client, self.target_keys, link.session_id)
        link.position = None
        if position is not None:
            seq, cp_last, fail_last = position
            delta = await read_delta(self.source, self.source_keys, link.session_id, seq, cp_last, fail_last)
            if delta is None:
                raise SyncSourceGoneError(f"session {link.session_id!r} no longer exists on the source")
            result = (await importer.write([delta], task_id="", policy="source-wins", marker_ttl_ms=0,
                                           backup=False, mode="delta"))[0]  # fmt: skip
            if isinstance(result, ImportResult):
                if result.outcome == "stale":
                    raise SyncError(
                        f"the target {link.instance!r} is ahead of the source (seq {result.target['seq']} > "
                        f"{delta.seq}): it was written by someone else"
                    )
                link.last_synced_seq = delta.seq
                link.position = _position(delta, cp_last, fail_last)
                return int(result.detail or 0)
            if not _needs_full_copy(result):
                raise result if isinstance(result, HuddleError) else SyncError(str(result))
        snapshots = await self._exporter.read([link.session_id])
        snap = snapshots[0]
        if snap is None:
            raise SyncSourceGoneError(f"session {link.session_id!r} does not exist on the source")
        result = (
            await importer.write([snap], task_id="", policy="source-wins", marker_ttl_ms=0, backup=False)
        )[0]
        if not isinstance(result, ImportResult):
            raise result if isinstance(result, HuddleError) else SyncError(str(result))
        link.full_copies += 1
        link.last_synced_seq = snap.seq
        link.position = _position(snap, None, None)
        return snap.events

    async def _periodic(self, link: SyncLink) -> None:
        """periodic: sync every ``sync_interval`` seconds."""
        while True:
            await asyncio.sleep(self.config.sync_interval)
            try:
                await self._sync(link)
            except SyncSourceGoneError:
                return
            except HuddleError as exc:
                log.warning("periodic sync of %s to %s failed: %s", link.session_id, link.instance, exc)

    async def fetch(self, session_id: str | None = None) -> list[CrossInstanceSession]:
        """Every live link recorded on the source, of every process (of ``session_id`` only, if given)."""
        if session_id is not None:
            check_id(session_id)
        return await read_sync_links(self.source, self.source_keys, session_id)

    def status(self, session_id: str, instance: str | None = None) -> CrossInstanceSession | None:
        """This process's link of the session (the first linked instance if none is named)."""
        for (sid, name), link in self._links.items():
            if sid == session_id and instance in (None, name):
                return link.view(self.owner)
        return None

    def list(self) -> list[CrossInstanceSession]:
        """Every link of this process."""
        return [link.view(self.owner) for link in self._links.values()]

    async def stop(self, session_id: str, instance: str | None = None) -> bool:
        """Stop syncing the session (to ``instance`` or everywhere); False if it was not linked."""
        keys = [key for key in self._links if key[0] == session_id and instance in (None, key[1])]
        links = [self._links.pop(key) for key in keys]
        for link in links:
            await self.follower.remove(link)
        await _cancel(*(link.runner for link in links))
        for link in links:
            link.runner = None
            link.status = "stopped"
        await self.board.forget(links)
        return bool(keys)

    async def close(self) -> None:
        """Stop every link, delete their status records and close the target clients (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self.follower.close()
        await _cancel(*(link.runner for link in self._links.values()))
        for link in self._links.values():
            link.runner = None
            link.status = "stopped"
        await self.board.close()
        for client, _ in self._targets.values():
            await client.aclose()
        self._targets.clear()


def _position(
    written: Snapshot, cp_before: str | None, fail_before: str | None
) -> tuple[int, str | None, str | None]:
    """The target's position after ``written`` was applied: its seq, last checkpoint id (checkpoints are stored
    at ``0-<seq>``, the seq in meta ``cps``) and last failure snapshot id."""
    cp = f"0-{written.meta['cps']}" if written.meta.get("cp") else cp_before
    return written.seq, cp, (written.failure_ids[-1] if written.failure_ids else fail_before)


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


async def _cancel(*tasks: asyncio.Task[None] | None) -> None:
    """Cancel the tasks, then wait for all of them (one by one, each could wait for connections the others
    hold in blocked reads)."""
    running = [task for task in tasks if task is not None and not task.done()]
    for task in running:
        task.cancel()
    for outcome in await asyncio.gather(*running, return_exceptions=True):
        if isinstance(outcome, Exception):
            log.error("a sync task had failed: %r", outcome)
