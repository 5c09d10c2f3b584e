"""SessionMigration: full, incremental and selective migration between Redis instances, and cross-instance sync."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from ..backend.connection import RedisClient, create_client
from ..config import mask_url
from ..core.keys import KeySpace
from ..core.store import redis_boundary
from ..errors import (
    InvalidMigrationRequestError,
    MigrationStateError,
    MigrationTaskBusyError,
    MigrationTaskNotFoundError,
    ShuttingDownError,
)
from ..ids import check_id
from .config import CONFLICT_POLICIES, MigrationConfig
from .copier import Exporter, Importer
from .models import (
    ConflictRecord,
    CrossInstanceSession,
    MigrationErrorRecord,
    MigrationTask,
    RollbackReport,
    TaskKind,
    ValidationReport,
)
from .runner import Context, run_task, validate
from .sync import CrossInstanceSync
from .tasks import TaskStore, now_ms
from .validation import Digester

RESUMABLE = ("pending", "running", "cancelling", "cancelled", "failed")
_EPOCH = datetime.fromtimestamp(0, UTC)


def parse_since(since: datetime | str | float) -> int:
    """A timestamp (aware datetime, ISO 8601 text, or epoch seconds) as epoch milliseconds."""
    if isinstance(since, bool):
        raise InvalidMigrationRequestError(f"since must be a timestamp, not {since!r}")
    if isinstance(since, int | float):
        return int(since * 1000)
    if isinstance(since, str):
        try:
            since = datetime.fromisoformat(since)
        except ValueError:
            raise InvalidMigrationRequestError(f"since {since!r} is not an ISO 8601 timestamp") from None
    if isinstance(since, datetime):
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return int(since.timestamp() * 1000)
    raise InvalidMigrationRequestError(f"since must be a timestamp, not {since!r}")


class SessionMigration:
    """Moves sessions between Redis instances as units, resumably and verifiably; keeps sessions in sync."""

    def __init__(self, config: MigrationConfig) -> None:
        self.config = config
        self.source_keys = KeySpace(config.namespace, config.index_shards)
        self.target_keys = KeySpace(config.effective_target_namespace, config.index_shards)
        self._source: RedisClient | None = None
        self._target: RedisClient | None = None
        self._source_raw: RedisClient | None = None
        self._ctx: Context | None = None
        self._sync: CrossInstanceSync | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def connect(self) -> Self:
        """Connect to both sides (PING each)."""
        if self._ctx is not None:
            return self
        source = create_client(self.config.redis_settings(self.config.source_url))
        target = create_client(self.config.redis_settings(self.config.target_url))
        # DUMP payloads are binary: read them over a client that does not decode replies.
        source_raw = create_client(self.config.redis_settings(self.config.source_url), decode_responses=False)
        try:
            await _ping(source)
            await _ping(target)
        except BaseException:
            for client in (source, target, source_raw):
                await client.aclose()
            raise
        self._source, self._target, self._source_raw = source, target, source_raw
        self._ctx = Context(
            config=self.config,
            source=source,
            target=target,
            source_keys=self.source_keys,
            target_keys=self.target_keys,
            exporter=Exporter(source, self.source_keys, raw=source_raw),
            importer=Importer(target, self.target_keys),
            tasks=TaskStore(target, self.target_keys, self.config.task_ttl),
            source_digest=Digester(source, self.source_keys),
            target_digest=Digester(target, self.target_keys),
        )
        self._sync = CrossInstanceSync(self.config, source, self.source_keys, self.target_keys, self._owner)
        return self

    initialize = connect

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop running tasks (they stay resumable) and syncs, and release connections (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._running.values()):
            task.cancel()
        for task in list(self._running.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._running.clear()
        if self._sync is not None:
            await self._sync.close()
        for client in (self._source, self._target, self._source_raw):
            if client is not None:
                await client.aclose()

    def _context(self) -> Context:
        if self._closed:
            raise ShuttingDownError("the migration service is closed")
        if self._ctx is None:
            raise MigrationStateError("call connect() (or use 'async with') first")
        return self._ctx

    # -- starting tasks -------------------------------------------------------------------------------------
    async def start_full_migration(
        self,
        *,
        backup_first: bool = True,
        validate_after: bool | None = None,
        conflict_policy: str | None = None,
    ) -> str:
        """Migrate every session of the namespace; returns the task id (the task runs in the background).

        ``backup_first``: keep the target's own copy of every session this task overwrites, so ``rollback``
        restores it (without it, rollback only removes what the task wrote)."""
        return await self._start("full", backup_first=backup_first, validate_after=validate_after,
                                 policy=conflict_policy)  # fmt: skip

    async def start_incremental_migration(
        self,
        since: datetime | str | float,
        *,
        validate_after: bool | None = None,
        backup_first: bool = True,
        conflict_policy: str | None = None,
    ) -> str:
        """Migrate sessions active at or after ``since`` (from the activity index; no scan)."""
        return await self._start("incremental", since_ms=parse_since(since), backup_first=backup_first,
                                 validate_after=validate_after, policy=conflict_policy)  # fmt: skip

    async def start_selective_migration(
        self,
        session_ids: Iterable[str],
        *,
        validate_after: bool | None = None,
        backup_first: bool = True,
        conflict_policy: str | None = None,
    ) -> str:
        """Migrate these sessions; ids that do not exist are reported in the task, not fatal."""
        ids = list(dict.fromkeys(check_id(sid) for sid in session_ids))
        if not ids:
            raise InvalidMigrationRequestError("no session ids given")
        return await self._start("selective", ids=ids, backup_first=backup_first,
                                 validate_after=validate_after, policy=conflict_policy)  # fmt: skip

    async def _start(
        self,
        kind: TaskKind,
        *,
        backup_first: bool,
        validate_after: bool | None,
        policy: str | None,
        since_ms: int | None = None,
        ids: list[str] | None = None,
    ) -> str:
        ctx = self._context()
        policy = policy or self.config.conflict_policy
        if policy not in CONFLICT_POLICIES:
            raise InvalidMigrationRequestError(
                f"conflict policy must be one of {', '.join(CONFLICT_POLICIES)}, not {policy!r}"
            )
        task_id = f"mig-{datetime.now(UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}"
        doc: dict[str, Any] = {
            "kind": kind,
            "source": mask_url(self.config.source_url),
            "target": mask_url(self.config.target_url),
            "namespace": self.source_keys.namespace,
            "target_namespace": self.target_keys.namespace,
            "policy": policy,
            "since": since_ms,
            "ids": len(ids or []),
            "validate_after": self.config.enable_validation if validate_after is None else validate_after,
            "backup_first": backup_first,
            "batch_size": self.config.batch_size,
            "created": now_ms(),
        }
        await ctx.tasks.create(task_id, doc, ids or [], len(ids or []))
        await self._launch(task_id)
        return task_id

    async def _launch(self, task_id: str) -> None:
        ctx = self._context()
        if not await ctx.tasks.acquire_lease(task_id, self._owner, int(self.config.lease_ttl * 1000)):
            raise MigrationTaskBusyError(
                f"migration task {task_id!r} is being run by another process (its lease expires within "
                f"{self.config.lease_ttl:g}s of that process stopping)"
            )
        runner = asyncio.create_task(run_task(ctx, task_id, self._owner), name=f"huddle-migration-{task_id}")
        self._running[task_id] = runner
        runner.add_done_callback(lambda _: self._running.pop(task_id, None))

    async def resume_migration(self, task_id: str) -> str:
        """Continue a task from its persisted cursor (e.g. after its process died); returns the task id."""
        ctx = self._context()
        task = await self._require(task_id)
        if task.status not in RESUMABLE:
            raise MigrationStateError(f"migration task {task_id!r} is {task.status}; it cannot be resumed")
        if task_id in self._running:
            return task_id
        if task.status == "cancelling":
            await ctx.tasks.set_status(task_id, "cancelled")
        await self._launch(task_id)
        return task_id

    # -- monitoring -----------------------------------------------------------------------------------------
    async def get_migration_status(self, task_id: str) -> MigrationTask | None:
        """The task as persisted on the target (works from any process), or None if unknown."""
        return await self._context().tasks.load(task_id)

    async def _require(self, task_id: str) -> MigrationTask:
        task = await self.get_migration_status(task_id)
        if task is None:
            raise MigrationTaskNotFoundError(f"no migration task {task_id!r} on the target")
        return task

    async def list_migrations(self, limit: int = 20) -> list[MigrationTask]:
        """The most recent tasks, newest first."""
        tasks = self._context().tasks
        found = [await tasks.load(task_id) for task_id in await tasks.task_ids(limit)]
        return [task for task in found if task is not None]

    async def get_conflicts(self, task_id: str) -> list[ConflictRecord]:
        """Every conflict the task met, oldest first, with both sides' values."""
        await self._require(task_id)
        return await self._context().tasks.conflicts(task_id)

    async def get_errors(self, task_id: str) -> list[MigrationErrorRecord]:
        """Every error the task recorded, oldest first."""
        await self._require(task_id)
        return await self._context().tasks.errors(task_id)

    async def wait(self, task_id: str, poll_interval: float = 0.1) -> MigrationTask:
        """Wait until the task is done (completed, cancelled, failed...); also for tasks of other processes."""
        runner = self._running.get(task_id)
        if runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(runner)
        while True:
            task = await self._require(task_id)
            if task.done:
                return task
            await asyncio.sleep(poll_interval)

    async def cancel_migration(self, task_id: str) -> None:
        """Stop the task after its current batch (also when another process runs it); it stays resumable."""
        ctx = self._context()
        await self._require(task_id)
        await ctx.tasks.request_cancel(task_id)
        runner = self._running.get(task_id)
        if runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(runner)

    async def validate_migration(self, task_id: str | None = None) -> ValidationReport:
        """Compare session digests on both sides for the task's sessions (none given: the whole namespace)."""
        ctx = self._context()
        task = await self._require(task_id) if task_id is not None else None
        report = await validate(ctx, task)
        if task_id is not None:
            await ctx.tasks.save_validation(task_id, report)
        return report

    async def rollback(self, task_id: str) -> RollbackReport:
        """Remove what the task wrote on the target, restoring sessions it overwrote from its backups."""
        ctx = self._context()
        task = await self._require(task_id)
        if task_id in self._running or task.status in ("running", "cancelling"):
            raise MigrationStateError(f"migration task {task_id!r} is {task.status}; cancel it first")
        counts = {"removed": 0, "restored": 0, "none": 0}
        async for page in ctx.tasks.written(task_id, self.config.batch_size):
            for outcome in await ctx.importer.rollback(page, task_id):
                counts[outcome] = counts.get(outcome, 0) + 1
        await ctx.tasks.set_status(task_id, "rolled_back", finished=True)
        return RollbackReport(
            task_id=task_id,
            removed_sessions=counts["removed"],
            restored_sessions=counts["restored"],
            untouched_sessions=counts["none"],
        )

    # -- cross-instance sync ----------------------------------------------------------------------------------
    def _syncer(self) -> CrossInstanceSync:
        self._context()
        assert self._sync is not None
        return self._sync

    async def setup_cross_instance_sync(
        self, session_id: str, target_instance: str = "target", sync_mode: str = "real-time"
    ) -> CrossInstanceSession:
        """Keep ``session_id`` mirrored on ``target_instance`` ('target' or a name from ``config.instances``)."""
        return await self._syncer().setup(session_id, target_instance, sync_mode)

    async def sync_session(self, session_id: str, target_instance: str | None = None) -> int:
        """Sync the session now; returns how many events were applied."""
        return await self._syncer().sync_session(session_id, target_instance)

    def get_cross_instance_status(
        self, session_id: str, target_instance: str | None = None
    ) -> CrossInstanceSession | None:
        """The live status of this process's sync of the session (no I/O; ``fetch_*`` reads every process's)."""
        return self._syncer().status(session_id, target_instance)

    def list_cross_instance_sessions(self) -> list[CrossInstanceSession]:
        """The live status of every link this object runs (no I/O; ``fetch_*`` reads every process's)."""
        return self._syncer().list()

    async def fetch_cross_instance_status(
        self, session_id: str, target_instance: str | None = None
    ) -> CrossInstanceSession | None:
        """The session's sync status as published on the source by any process (this one's first, else the
        most recently synced link), or None if no live process syncs it."""
        found = [
            link
            for link in await self._syncer().fetch(session_id)
            if target_instance in (None, link.target_instance)
        ]
        found.sort(key=lambda link: (link.owner != self._owner, -(link.last_sync_at or _EPOCH).timestamp()))
        return found[0] if found else None

    async def fetch_cross_instance_sessions(
        self, session_id: str | None = None
    ) -> list[CrossInstanceSession]:
        """Every live sync link published on the source, by every process (``owner`` tells them apart)."""
        return await self._syncer().fetch(session_id)

    async def stop_cross_instance_sync(self, session_id: str, target_instance: str | None = None) -> bool:
        """Stop syncing the session; False if it was not being synced."""
        return await self._syncer().stop(session_id, target_instance)


@redis_boundary
async def _ping(client: RedisClient) -> None:
    await client.ping()
