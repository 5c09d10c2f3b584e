"""Running one migration task: batches from the source, imported on the target, bookkept atomically."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..connection import RedisClient
from ..errors import HuddleError, MigrationStateError
from ..keys import KeySpace
from ..models import ms_to_datetime
from .config import MigrationConfig
from .copier import Exporter, Importer, ImportResult, Snapshot
from .models import (
    ConflictRecord,
    MigrationErrorRecord,
    MigrationTask,
    SessionMismatch,
    SideValues,
    ValidationReport,
)
from .sources import (
    Batch,
    count_full,
    count_incremental,
    full_batches,
    incremental_batches,
    selective_batches,
)
from .tasks import TaskStore
from .validation import Digester, compare, only_on_target

log = logging.getLogger("huddle.migration")

MAX_MISMATCHES = 1000


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a task run needs: both sides' clients and keys, the importer and the task records."""

    config: MigrationConfig
    source: RedisClient
    target: RedisClient
    source_keys: KeySpace
    target_keys: KeySpace
    exporter: Exporter
    importer: Importer
    tasks: TaskStore
    source_digest: Digester
    target_digest: Digester


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def side(values: dict[str, str]) -> SideValues:
    """One side's values of a session (from its meta fields)."""
    updated = values.get("updated")
    return SideValues(
        seq=_int(values.get("seq")),
        version=_int(values.get("ver")),
        updated_at=ms_to_datetime(updated) if updated else None,
        state=values.get("state") or None,
        status=values.get("status") or None,
    )


def batches_for(
    ctx: Context, task: MigrationTask, cursor: dict[str, Any], *, on_target: bool = False
) -> AsyncIterator[Batch]:
    """The task's sessions in batches from ``cursor`` (``on_target``: a full listing of the target instead)."""
    size = ctx.config.batch_size
    if on_target:
        return full_batches(ctx.target, ctx.target_keys, size, cursor)
    if task.kind == "full":
        return full_batches(ctx.source, ctx.source_keys, size, cursor)
    if task.kind == "incremental":
        assert task.since is not None
        return incremental_batches(
            ctx.source, ctx.source_keys, int(task.since.timestamp() * 1000), size, cursor
        )
    return selective_batches(ctx.tasks, task.task_id, task.session_ids_count, size, cursor)


async def count_total(ctx: Context, task: MigrationTask) -> int:
    """How many sessions the task will look at (counted, never estimated)."""
    if task.kind == "full":
        return await count_full(ctx.source, ctx.source_keys, ctx.config.batch_size)
    if task.kind == "incremental":
        assert task.since is not None
        return await count_incremental(ctx.source, ctx.source_keys, int(task.since.timestamp() * 1000))
    return task.session_ids_count


class _Tally:
    """What one batch did, ready for TaskStore.commit_batch."""

    def __init__(self, task: MigrationTask) -> None:
        self.task = task
        self.counts: Counter[str] = Counter()
        self.written: list[str] = []
        self.conflicts: list[ConflictRecord] = []
        self.errors: list[MigrationErrorRecord] = []

    def error(self, session_id: str | None, code: str, message: str) -> None:
        self.errors.append(
            MigrationErrorRecord(session_id=session_id, code=code, message=message, at=datetime.now(UTC))
        )

    def conflict(self, snap: Snapshot, result: ImportResult, resolution: str) -> None:
        self.counts["conflicts"] += 1
        self.conflicts.append(
            ConflictRecord(
                session_id=snap.session_id,
                policy=self.task.conflict_policy,
                resolution=resolution,
                detail=result.detail,
                source=side(snap.meta),
                target=side(result.target),
                at=datetime.now(UTC),
            )
        )

    def add(self, snap: Snapshot, result: ImportResult | Exception) -> None:
        self.counts["processed"] += 1
        if isinstance(result, Exception):
            self.counts["failed"] += 1
            code = result.code if isinstance(result, HuddleError) else type(result).__name__
            self.error(snap.session_id, code, str(result))
            return
        outcome = result.outcome
        if result.wrote:
            self.counts["migrated"] += 1
            self.counts["events"] += snap.events
            self.written.append(snap.session_id)
            if outcome in ("replaced", "merged"):
                self.conflict(snap, result, "source")
        elif outcome == "unchanged":
            self.counts["unchanged"] += 1
        elif outcome == "kept":
            self.counts["kept"] += 1
            self.conflict(snap, result, "target")
        elif outcome in ("refused", "diverged"):
            self.counts["failed"] += 1
            self.conflict(snap, result, outcome)
            what = "histories diverge at " + result.detail if outcome == "diverged" else "policy 'fail'"
            self.error(snap.session_id, "conflict", f"target already has a different session ({what})")
        else:
            self.counts["failed"] += 1
            self.error(snap.session_id, "unexpected_outcome", outcome)


async def run_task(ctx: Context, task_id: str, owner: str) -> None:
    """Run (or resume) a task whose lease ``owner`` holds, until done, cancelled or failed."""
    tasks, cfg = ctx.tasks, ctx.config
    lease_ms = int(cfg.lease_ttl * 1000)
    try:
        task = await tasks.load(task_id)
        if task is None:
            raise MigrationStateError(f"migration task {task_id!r} disappeared")
        if task.status == "cancelling":  # cancelled before it got going
            await tasks.set_status(task_id, "cancelled", finished=True)
            return
        await tasks.set_status(task_id, "running", started=task.started_at is None, error="")
        if task.progress.processed_sessions == 0 and not task.cursor:
            await tasks.add_total(task_id, await count_total(ctx, task))
        status = "running"
        # Read batch N+1 from the source while batch N is written to the target (two servers, two round
        # trips in flight); cursors are still committed strictly in order, after their batch is written.
        pending: tuple[list[str], dict[str, Any], asyncio.Future[list[Snapshot | None]]] | None = None
        try:
            async for ids, cursor in batches_for(ctx, task, dict(task.cursor)):
                read = asyncio.ensure_future(ctx.exporter.read(ids))
                if pending is not None:
                    status = await _migrate_batch(ctx, task, *pending)
                    await tasks.renew_lease(task_id, owner, lease_ms)
                pending = (ids, cursor, read)
                if status == "cancelling":
                    break
            if pending is not None and status != "cancelling":
                status = await _migrate_batch(ctx, task, *pending)
                pending = None
        finally:
            if pending is not None and not pending[2].done():
                pending[2].cancel()
                with contextlib.suppress(asyncio.CancelledError, HuddleError):
                    await pending[2]
        if status == "cancelling" or await tasks.status(task_id) == "cancelling":
            await tasks.set_status(task_id, "cancelled", finished=True)
            return
        if task.validate_after:
            await tasks.save_validation(task_id, await validate(ctx, task))
        await tasks.set_status(task_id, "completed", finished=True)
    except asyncio.CancelledError:
        await _best_effort(
            tasks.set_status(task_id, "cancelled", error="stopped by close(); resume it", finished=True)
        )
        raise
    except HuddleError as exc:
        log.warning("migration task %s failed: %s", task_id, exc)
        await _best_effort(
            tasks.set_status(task_id, "failed", error=f"[{exc.code}] {exc.message}", finished=True)
        )
    finally:
        await _best_effort(tasks.release_lease(task_id))


async def _migrate_batch(
    ctx: Context,
    task: MigrationTask,
    ids: list[str],
    cursor: dict[str, Any],
    read: asyncio.Future[list[Snapshot | None]],
) -> str:
    tally = _Tally(task)
    snapshots = await read
    present: list[Snapshot] = []
    for sid, snap in zip(ids, snapshots, strict=True):
        if snap is None:
            tally.counts["processed"] += 1
            tally.counts["unknown"] += 1
            tally.error(sid, "session_not_found", f"session {sid!r} does not exist on the source")
        else:
            present.append(snap)
    results = await ctx.importer.write(
        present,
        task_id=task.task_id,
        policy=task.conflict_policy,
        marker_ttl_ms=ctx.config.task_ttl * 1000,
        backup=task.backup_first,
    )
    for snap, result in zip(present, results, strict=True):
        tally.add(snap, result)
    return await ctx.tasks.commit_batch(
        task.task_id, tally.counts, cursor, tally.written, tally.conflicts, tally.errors
    )


async def validate(ctx: Context, task: MigrationTask | None) -> ValidationReport:
    """Compare the task's sessions on both sides (no task: every session of the namespace, both ways)."""
    started = time.perf_counter()
    checked = failed = 0
    mismatches: list[SessionMismatch] = []

    def keep(found: list[SessionMismatch]) -> None:
        nonlocal failed
        failed += len(found)
        mismatches.extend(found[: MAX_MISMATCHES - len(mismatches)])

    full = task is None or task.kind == "full"
    if task is None:
        source_batches = full_batches(ctx.source, ctx.source_keys, ctx.config.batch_size, {})
    else:
        source_batches = batches_for(ctx, task, {})
    async for ids, _ in source_batches:
        if ids:
            seen, found = await compare(ctx.source_digest, ctx.target_digest, ids)
            checked += seen
            keep(found)
    if full:
        target_batches = full_batches(ctx.target, ctx.target_keys, ctx.config.batch_size, {})
        async for missing in only_on_target(ctx.source_digest, target_batches):
            seen, found = await compare(ctx.source_digest, ctx.target_digest, missing)
            checked += seen
            keep(found)
    return ValidationReport(
        task_id=task.task_id if task is not None else None,
        total_checked=checked,
        passed=checked - failed,
        failed=failed,
        mismatches=mismatches,
        duration_ms=(time.perf_counter() - started) * 1000,
        checked_at=datetime.now(UTC),
    )


async def _best_effort(update: Any) -> None:
    try:
        await update
    except HuddleError as exc:
        log.warning("could not record migration task state: %s", exc)
