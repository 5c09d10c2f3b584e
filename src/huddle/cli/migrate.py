"""``huddle migrate``: copy sessions between Redis instances with a live progress bar; status and rollback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..errors import InvalidMigrationRequestError
from ..migration import MigrationConfig, MigrationTask, SessionMigration, ValidationReport
from .common import console, err_console


def migrate_command(
    source: str = typer.Option(..., "--from", help="redis:// URL to read sessions from."),
    target: str = typer.Option(..., "--to", help="redis:// URL to write sessions to."),
    since: str | None = typer.Option(
        None, "--since", help="Incremental: sessions active since this ISO time."
    ),
    sessions: str | None = typer.Option(None, "--sessions", help="Selective: comma-separated session ids."),
    conflict: str | None = typer.Option(
        None,
        "--conflict",
        help="source-wins | target-wins | newest-wins | merge | fail (default newest-wins).",
    ),
    validate: bool = typer.Option(
        False, "--validate", help="Compare session digests on both sides at the end."
    ),
    resume: str | None = typer.Option(None, "--resume", help="Continue this task from its saved cursor."),
    status: str | None = typer.Option(None, "--status", help="Print this task's status and exit."),
    rollback: str | None = typer.Option(None, "--rollback", help="Undo what this task wrote on the target."),
    namespace: str = typer.Option("huddle", "--namespace", help="Namespace of the sessions on the source."),
    target_namespace: str | None = typer.Option(None, "--target-namespace", help="Namespace on the target."),
    batch_size: int = typer.Option(100, "--batch-size", help="Sessions per round trip."),
    copy_mode: str = typer.Option(
        "auto",
        "--copy-mode",
        help="auto (DUMP/RESTORE when the target's Redis can read the source's payloads) | restore | logical.",
    ),
) -> None:
    """Migrate sessions (full by default; --since for incremental, --sessions for selective)."""
    if since is not None and sessions is not None:
        raise InvalidMigrationRequestError("use either --since or --sessions, not both")
    values: dict[str, Any] = {
        "source_url": source,
        "target_url": target,
        "namespace": namespace,
        "target_namespace": target_namespace,
        "batch_size": batch_size,
        "enable_validation": validate,
        "copy_mode": copy_mode,
    }
    if conflict:
        values["conflict_policy"] = conflict
    config = MigrationConfig(**values)
    asyncio.run(_run(config, since, sessions, resume, status, rollback, validate))


async def _run(
    config: MigrationConfig,
    since: str | None,
    sessions: str | None,
    resume: str | None,
    status: str | None,
    rollback: str | None,
    validate: bool,
) -> None:
    async with SessionMigration(config) as migration:
        if status is not None:
            task = await migration.get_migration_status(status)
            if task is None:
                raise InvalidMigrationRequestError(f"no migration task {status!r} on the target")
            _print_task(task)
            return
        if rollback is not None:
            report = await migration.rollback(rollback)
            console.print(
                f"rolled back {rollback}: {report.removed_sessions} removed, "
                f"{report.restored_sessions} restored from backup"
            )
            return
        if resume is not None:
            task_id = await migration.resume_migration(resume)
        elif sessions is not None:
            ids = [sid.strip() for sid in sessions.split(",") if sid.strip()]
            task_id = await migration.start_selective_migration(ids, validate_after=validate)
        elif since is not None:
            task_id = await migration.start_incremental_migration(since, validate_after=validate)
        else:
            task_id = await migration.start_full_migration(validate_after=validate)
        err_console.print(f"task {task_id}")
        task = await _follow(migration, task_id)
        _print_task(task)
        if (
            task.status != "completed"
            or task.progress.failed_sessions
            or (task.validation and not task.validation.ok)
        ):
            raise typer.Exit(1)


async def _follow(migration: SessionMigration, task_id: str) -> MigrationTask:
    """Poll the persisted status and draw it: sessions and events, session rate, ETA."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} sessions"),
        TextColumn("{task.fields[events]} events"),
        TextColumn("{task.fields[rate]:.0f} sessions/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    started = time.perf_counter()
    with Progress(*columns, console=err_console, transient=False) as progress:
        bar = progress.add_task("migrating", total=None, events=0, rate=0.0)
        while True:
            task = await migration.get_migration_status(task_id)
            assert task is not None
            p = task.progress
            elapsed = max(time.perf_counter() - started, 1e-9)
            progress.update(
                bar,
                total=p.total_sessions or None,
                completed=p.processed_sessions,
                events=p.migrated_events,
                rate=p.processed_sessions / elapsed,
                description="validating" if p.processed_sessions >= p.total_sessions > 0 else "migrating",
            )
            if task.done:
                return task
            await asyncio.sleep(0.2)


def _print_task(task: MigrationTask) -> None:
    p = task.progress
    table = Table(title=f"{task.task_id} ({task.kind}, {task.conflict_policy})", show_header=False)
    for name, value in (
        ("status", task.status),
        ("sessions", f"{p.processed_sessions}/{p.total_sessions}"),
        ("migrated", p.migrated_sessions),
        ("unchanged", p.unchanged_sessions),
        ("kept (target)", p.kept_sessions),
        ("failed", p.failed_sessions),
        ("unknown", p.unknown_sessions),
        ("conflicts", p.conflicts),
        ("events", p.migrated_events),
    ):
        table.add_row(name, str(value))
    if task.error:
        table.add_row("error", task.error)
    if task.validation is not None:
        table.add_row("validation", _validation_line(task.validation))
    console.print(table)
    for error in task.recent_errors[-10:]:
        console.print(f"[yellow]{error.session_id}[/] [{error.code}] {error.message}")


def _validation_line(report: ValidationReport) -> str:
    line = f"{report.passed}/{report.total_checked} passed"
    for mismatch in report.mismatches[:5]:
        line += f"\n{mismatch.session_id}: {mismatch.problem} {','.join(mismatch.fields)}"
    return line
