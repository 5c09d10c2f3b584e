"""Running one migration task: batches from the source, imported on the target, bookkept atomically."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..backend.connection import RedisClient
from ..core.keys import KeySpace
from ..errors import HuddleError, MigrationStateError, SessionNotFoundError
from ..models import ms_to_datetime
from .config import MigrationConfig
from .copier import Exporter, Importer, ImportResult, RestoreRefusedError, Snapshot
from .models import (
    ConflictRecord,
    MigrationErrorRecord,
    MigrationTask,
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
from .validation import Digester
from .validator import Validator, same_version, versions

log = logging.getLogger("huddle.migration")


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
        self.written: list[tuple[str, int]] = []  # (session id, events): counted by the commit script
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
            self.written.append((snap.session_id, snap.events))
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
        fresh = task.progress.processed_sessions == 0 and not task.cursor
        if fresh:
            await tasks.add_total(task_id, await count_total(ctx, task))
        status = "running"
        plan = _Plan(dump=await use_restore(ctx, task))
        # A fresh run validates each batch as it is written (verified on write, or compared again while the
        # next batches are copied); a resumed one validates everything at the end (earlier batches were
        # written by another run).
        validator = await validator_for(ctx) if task.validate_after and fresh else None
        plan.verify = plan.dump and validator is not None and validator.fingerprints
        report: ValidationReport | None = None
        # Read batch N+1 from the source while batch N is written to the target (two servers, two round
        # trips in flight); cursors are still committed strictly in order, after their batch is written.
        pending: tuple[list[str], dict[str, Any], asyncio.Future[list[Snapshot | None]]] | None = None
        try:
            async for ids, cursor in batches_for(ctx, task, dict(task.cursor)):
                read = asyncio.ensure_future(ctx.exporter.read(ids, dump=plan.dump))
                if pending is not None:
                    status = await _migrate_batch(ctx, task, plan, validator, *pending)
                    await tasks.renew_lease(task_id, owner, lease_ms)
                pending = (ids, cursor, read)
                if status == "cancelling":
                    break
            if pending is not None and status != "cancelling":
                status = await _migrate_batch(ctx, task, plan, validator, *pending)
                pending = None
            if status != "cancelling" and task.validate_after:
                report = await (
                    finish_validation(ctx, task, validator) if validator is not None else validate(ctx, task)
                )
        finally:
            if validator is not None:
                await validator.aclose()
            if pending is not None and not pending[2].done():
                pending[2].cancel()
                with contextlib.suppress(asyncio.CancelledError, HuddleError):
                    await pending[2]
        if status == "cancelling" or await tasks.status(task_id) == "cancelling":
            await tasks.set_status(task_id, "cancelled", finished=True)
            return
        if report is not None:
            await tasks.save_validation(task_id, report)
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


@dataclass(slots=True)
class _Plan:
    """How this run copies sessions (switches to logical copies if the target refuses a payload).

    ``verify``: RESTORE copies between servers of the same version are verified on write — the import script
    reads each written session back and returns its fingerprint, compared with the one taken at export; only
    sessions that were not written or whose fingerprints differ are compared again by re-reading both sides."""

    dump: bool
    verify: bool = False


async def use_restore(ctx: Context, task: MigrationTask) -> bool:
    """Copy with DUMP/RESTORE? Only for full copies the target's Redis can read (its version >= the source's).

    'merge' compares events inside the import script, so it always copies logically."""
    mode = ctx.config.copy_mode
    if mode == "logical" or task.conflict_policy == "merge":
        return False
    if mode == "restore":
        return True
    source, target = await versions(ctx.source, ctx.target)
    return source[:2] <= target[:2]


async def _migrate_batch(
    ctx: Context,
    task: MigrationTask,
    plan: _Plan,
    validator: Validator | None,
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
    results = await _write(ctx, task, present, verify=plan.verify)
    refused = [i for i, result in enumerate(results) if isinstance(result, RestoreRefusedError)]
    if refused:  # nothing was written for these: copy them logically, and the rest of the run too
        if plan.dump:
            log.warning("task %s: the target refuses DUMP payloads; copying logically", task.task_id)
        plan.dump = plan.verify = False
        fresh = await ctx.exporter.read([present[i].session_id for i in refused])
        again = {snap.session_id: snap for snap in fresh if snap is not None}
        retried = dict(zip(again, await _write(ctx, task, list(again.values())), strict=True))
        for i in refused:
            sid = present[i].session_id
            if sid in again:
                present[i], results[i] = again[sid], retried[sid]
            else:
                results[i] = SessionNotFoundError(
                    f"session {sid!r} disappeared from the source", session_id=sid
                )
    for snap, result in zip(present, results, strict=True):
        tally.add(snap, result)
    status = await ctx.tasks.commit_batch(
        task.task_id, tally.counts, cursor, tally.written, tally.conflicts, tally.errors
    )
    if validator is not None:
        recheck = ids
        if plan.verify:
            ok = {
                snap.session_id
                for snap, result in zip(present, results, strict=True)
                if isinstance(result, ImportResult)
                and result.fingerprint
                and result.fingerprint == snap.fingerprint
            }
            validator.verified(len(ok))
            recheck = [sid for sid in ids if sid not in ok]
        await validator.add(recheck)
    return status


async def _write(
    ctx: Context, task: MigrationTask, snaps: list[Snapshot], *, verify: bool = False
) -> list[ImportResult | Exception]:
    return await ctx.importer.write(
        snaps,
        task_id=task.task_id,
        policy=task.conflict_policy,
        marker_ttl_ms=ctx.config.task_ttl * 1000,
        backup=task.backup_first,
        verify=verify,
    )


async def validator_for(ctx: Context) -> Validator:
    """A validator for this context's two sides."""
    same = await same_version(ctx.source, ctx.target)
    return Validator(ctx.source_digest, ctx.target_digest, fingerprints=same)


async def finish_validation(
    ctx: Context, task: MigrationTask | None, validator: Validator
) -> ValidationReport:
    """Wait for the validator's comparisons; for a full comparison also look for sessions only on the target."""
    if task is None or task.kind == "full":
        size = ctx.config.batch_size
        await validator.target_only(
            lambda: count_full(ctx.target, ctx.target_keys, size),
            lambda: full_batches(ctx.target, ctx.target_keys, size, {}),
        )
    else:
        await validator.drain()
    return validator.report(task.task_id if task is not None else None)


async def validate(ctx: Context, task: MigrationTask | None) -> ValidationReport:
    """Compare the task's sessions on both sides (no task: every session of the namespace, both ways)."""
    validator = await validator_for(ctx)
    try:
        if task is None:
            batches = full_batches(ctx.source, ctx.source_keys, ctx.config.batch_size, {})
        else:
            batches = batches_for(ctx, task, {})
        async for ids, _ in batches:
            await validator.add(ids)
        return await finish_validation(ctx, task, validator)
    finally:
        await validator.aclose()


async def _best_effort(update: Any) -> None:
    try:
        await update
    except HuddleError as exc:
        log.warning("could not record migration task state: %s", exc)
