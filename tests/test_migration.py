"""SessionMigration: full, incremental and selective migration between two real redis-servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from migration_support import (
    make_migration,
    populate,
    raw_session,
    same_session,
    source,
    target,
    target_server,
)

from huddle import EmbeddedRedis, SessionManager
from huddle.errors import (
    ConfigError,
    InvalidIdentifierError,
    InvalidMigrationRequestError,
    MigrationStateError,
    MigrationTaskNotFoundError,
)
from huddle.migration import MigrationConfig, SessionMigration

__all__ = ["make_migration", "source", "target", "target_server"]

MakeMigration = Callable[..., Awaitable[SessionMigration]]


async def test_full_migration_copies_every_session_exactly(
    source: SessionManager, make_migration: MakeMigration, redis_server: EmbeddedRedis,
    target_server: EmbeddedRedis, namespace: str,
) -> None:  # fmt: skip
    ids = await populate(source, 40, 12)
    await source.emit_event(ids[0], {"type": "modified", "data": {"x": 1}}, "bob", idempotency_key="retry-1")
    migration = await make_migration()
    task_id = await migration.start_full_migration(validate_after=True)
    task = await migration.wait(task_id)
    assert task.status == "completed"
    assert task.progress.total_sessions == 40
    assert task.progress.migrated_sessions == 40
    assert task.progress.migrated_events == sum([len(await source.get_events(sid)) for sid in ids])
    assert task.validation is not None and task.validation.ok and task.validation.total_checked == 40
    for sid in ids[:5]:
        same_session(
            await raw_session(redis_server.url, namespace, sid),
            await raw_session(target_server.url, namespace, sid),
        )


async def test_full_migration_includes_completed_sessions_outside_the_activity_index(
    source: SessionManager, make_migration: MakeMigration, target: SessionManager
) -> None:
    ids = await populate(source, 3, 2)
    await source.complete_session(ids[1], "alice")
    migration = await make_migration()
    await migration.wait(await migration.start_full_migration())
    copied = await target.get_session(ids[1])
    assert copied.status == "completed"
    assert sorted(await target.list_active_sessions()) == sorted([ids[0], ids[2]])


async def test_migrated_session_keeps_working_on_the_target_with_its_idempotency_keys(
    source: SessionManager, make_migration: MakeMigration, target: SessionManager
) -> None:
    sid = await source.create_session("alice")
    seq = await source.emit_event(sid, {"type": "modified"}, "alice", idempotency_key="k-1")
    migration = await make_migration()
    await migration.wait(await migration.start_selective_migration([sid]))
    assert await target.emit_event(sid, {"type": "modified"}, "alice", idempotency_key="k-1") == seq
    assert await target.emit_event(sid, {"type": "modified"}, "alice") == seq + 1


async def test_failure_snapshots_move_with_their_session(
    source: SessionManager, make_migration: MakeMigration, target: SessionManager
) -> None:
    sid = await source.create_session("alice")
    await source.emit_event(
        sid, {"type": "broke", "stateTransition": {"from": "working", "to": "broken"}}, "alice"
    )
    migration = await make_migration()
    await migration.wait(await migration.start_selective_migration([sid]))
    refs = [ref for ref in await target.list_failure_snapshots() if ref.session_id == sid]
    assert len(refs) == 1
    snapshot = await target.get_failure_snapshot(sid, refs[0].snapshot_id)
    assert snapshot is not None and snapshot.state == "broken"


async def test_incremental_migration_moves_only_sessions_changed_since(
    source: SessionManager, make_migration: MakeMigration
) -> None:
    ids = await populate(source, 200, 2)
    migration = await make_migration(batch_size=50)
    first = await migration.wait(await migration.start_full_migration(validate_after=False))
    assert first.progress.migrated_sessions == 200
    since = time.time()
    await asyncio.sleep(0.01)  # the activity index has millisecond scores: changes must land after ``since``
    changed = ids[::10]
    for sid in changed:
        await source.emit_event(sid, {"type": "modified"}, "alice")
    task = await migration.wait(await migration.start_incremental_migration(since, validate_after=True))
    assert task.progress.total_sessions == 20
    assert task.progress.migrated_sessions == 20
    assert task.progress.conflicts == 20  # the target had the older copies, newest-wins took the source's
    assert sorted(conflict.session_id for conflict in await migration.get_conflicts(task.task_id)) == sorted(
        changed
    )
    assert task.validation is not None and task.validation.ok


async def test_selective_migration_reports_unknown_ids_without_failing(
    source: SessionManager, make_migration: MakeMigration, target: SessionManager
) -> None:
    ids = await populate(source, 3, 1)
    migration = await make_migration()
    task = await migration.wait(
        await migration.start_selective_migration([ids[0], "no-such-session", ids[2]])
    )
    assert task.status == "completed"
    assert task.progress.migrated_sessions == 2
    assert task.progress.unknown_sessions == 1
    assert [(e.session_id, e.code) for e in task.recent_errors] == [("no-such-session", "session_not_found")]
    assert (await target.get_session(ids[2])).last_seq == (await source.get_session(ids[2])).last_seq


async def test_migration_status_is_readable_from_another_migration_object(
    source: SessionManager, make_migration: MakeMigration
) -> None:
    await populate(source, 5, 1)
    runner = await make_migration()
    task_id = await runner.start_full_migration()
    await runner.wait(task_id)
    observer = await make_migration()
    task = await observer.get_migration_status(task_id)
    assert task is not None and task.status == "completed" and task.progress.migrated_sessions == 5
    assert task_id in [item.task_id for item in await observer.list_migrations()]


async def test_cancelled_migration_resumes_without_redoing_sessions(
    source: SessionManager, make_migration: MakeMigration
) -> None:
    await populate(source, 120, 1)
    migration = await make_migration(batch_size=1)
    task_id = await migration.start_full_migration(validate_after=False)
    await migration.cancel_migration(task_id)
    cancelled = await migration.wait(task_id)
    assert cancelled.status == "cancelled"
    assert cancelled.progress.processed_sessions < 120
    await migration.resume_migration(task_id)
    done = await migration.wait(task_id)
    assert done.status == "completed"
    assert done.progress.migrated_sessions == 120
    assert (await migration.validate_migration(task_id)).ok


async def test_rollback_removes_created_sessions_and_restores_overwritten_ones(
    source: SessionManager, make_migration: MakeMigration, target: SessionManager
) -> None:
    await source.create_session("alice", session_id="fresh")
    await source.create_session("alice", session_id="shared")
    await source.emit_event("shared", {"type": "modified"}, "alice")
    await target.create_session("carol", session_id="shared")
    migration = await make_migration(conflict_policy="source-wins")
    task = await migration.wait(await migration.start_full_migration())
    assert (await target.get_session("shared")).creator == "alice"
    report = await migration.rollback(task.task_id)
    assert (report.removed_sessions, report.restored_sessions) == (1, 1)
    assert (await target.get_session("shared")).creator == "carol"
    assert await target.store.get_session("fresh") is None
    assert (await migration.get_migration_status(task.task_id)).status == "rolled_back"  # type: ignore[union-attr]
    with pytest.raises(MigrationStateError):
        await migration.resume_migration(task.task_id)


async def test_bad_requests_raise_typed_errors_and_record_nothing(
    make_migration: MakeMigration, redis_server: EmbeddedRedis
) -> None:
    migration = await make_migration()
    with pytest.raises(InvalidMigrationRequestError):
        await migration.start_incremental_migration("yesterday")
    with pytest.raises(InvalidMigrationRequestError):
        await migration.start_full_migration(conflict_policy="coin-flip")
    with pytest.raises(InvalidIdentifierError):
        await migration.start_selective_migration(["ok", "bad id"])
    with pytest.raises(MigrationTaskNotFoundError):
        await migration.resume_migration("mig-unknown")
    with pytest.raises(ConfigError):
        MigrationConfig(source_url=redis_server.url, target_url="http://nowhere", batch_size=0)
    assert await migration.list_migrations() == []
