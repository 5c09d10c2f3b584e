"""Conflict policies on prepared divergent targets, and validation catching every kind of difference."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from migration_support import make_migration, populate, raw_session, source, target, target_server

from huddle import EmbeddedRedis, SessionManager
from huddle.migration import SessionMigration

__all__ = ["make_migration", "source", "target", "target_server"]

MakeMigration = Callable[..., Awaitable[SessionMigration]]


async def diverge(
    source: SessionManager, target: SessionManager, sid: str, source_events: int, target_events: int
) -> None:
    """The same session id on both sides with different histories."""
    await source.create_session("alice", session_id=sid)
    for i in range(source_events):
        await source.emit_event(sid, {"type": "modified", "data": {"side": "source", "i": i}}, "alice")
    await target.create_session("alice", session_id=sid)
    for i in range(target_events):
        await target.emit_event(sid, {"type": "modified", "data": {"side": "target", "i": i}}, "alice")


async def migrate_one(make_migration: MakeMigration, sid: str, policy: str) -> tuple[SessionMigration, str]:
    migration = await make_migration(conflict_policy=policy)
    task = await migration.wait(await migration.start_selective_migration([sid], validate_after=False))
    return migration, task.task_id


async def test_source_wins_overwrites_the_target_and_records_both_sides(
    source: SessionManager, target: SessionManager, make_migration: MakeMigration
) -> None:
    await diverge(source, target, "c1", 3, 6)
    migration, task_id = await migrate_one(make_migration, "c1", "source-wins")
    assert (await target.get_session("c1")).last_seq == 4
    [conflict] = await migration.get_conflicts(task_id)
    assert (conflict.resolution, conflict.source.seq, conflict.target.seq) == ("source", 4, 7)
    assert conflict.policy == "source-wins"


async def test_target_wins_keeps_the_target_and_records_the_conflict(
    source: SessionManager, target: SessionManager, make_migration: MakeMigration
) -> None:
    await diverge(source, target, "c2", 6, 3)
    migration, task_id = await migrate_one(make_migration, "c2", "target-wins")
    assert (await target.get_session("c2")).last_seq == 4
    task = await migration.get_migration_status(task_id)
    assert task is not None and task.progress.kept_sessions == 1 and task.progress.conflicts == 1
    assert task.recent_conflicts[0].resolution == "target"


async def test_newest_wins_takes_the_side_with_the_later_seq(
    source: SessionManager, target: SessionManager, make_migration: MakeMigration
) -> None:
    await diverge(source, target, "longer-on-source", 5, 2)
    await diverge(source, target, "longer-on-target", 2, 5)
    migration = await make_migration(conflict_policy="newest-wins")
    task = await migration.wait(
        await migration.start_selective_migration(
            ["longer-on-source", "longer-on-target"], validate_after=False
        )
    )
    assert (await target.get_session("longer-on-source")).last_seq == 6
    events = await target.get_events("longer-on-target", 2)
    assert events[0].data == {"side": "target", "i": 0}
    resolutions = {c.session_id: c.resolution for c in await migration.get_conflicts(task.task_id)}
    assert resolutions == {"longer-on-source": "source", "longer-on-target": "target"}


async def test_merge_extends_a_target_whose_history_is_a_prefix_of_the_source(
    source: SessionManager, target: SessionManager, make_migration: MakeMigration
) -> None:
    sid = await source.create_session("alice", session_id="m1")
    for i in range(3):
        await source.emit_event(sid, {"type": "modified", "data": {"i": i}}, "alice")
    first = await make_migration()
    await first.wait(await first.start_selective_migration([sid]))
    for i in range(3, 8):
        await source.emit_event(sid, {"type": "modified", "data": {"i": i}}, "alice")
    migration, task_id = await migrate_one(make_migration, sid, "merge")
    assert [e.seq for e in await target.get_events(sid)] == list(range(1, 10))
    assert (await migration.get_conflicts(task_id))[0].resolution == "source"
    assert (await migration.validate_migration(task_id)).ok


async def test_merge_reports_diverged_histories_and_writes_nothing(
    source: SessionManager, target: SessionManager, make_migration: MakeMigration
) -> None:
    await diverge(source, target, "m2", 4, 4)
    before = [e.data for e in await target.get_events("m2")]
    migration, task_id = await migrate_one(make_migration, "m2", "merge")
    [conflict] = await migration.get_conflicts(task_id)
    assert conflict.resolution == "diverged" and conflict.detail == "seq 1"
    task = await migration.get_migration_status(task_id)
    assert task is not None and task.progress.failed_sessions == 1
    assert [e.data for e in await target.get_events("m2")] == before


async def test_fail_policy_refuses_the_session_and_keeps_going(
    source: SessionManager, target: SessionManager, make_migration: MakeMigration
) -> None:
    await diverge(source, target, "f1", 2, 2)
    await source.create_session("alice", session_id="f2")
    migration = await make_migration(conflict_policy="fail")
    task = await migration.wait(await migration.start_selective_migration(["f1", "f2"], validate_after=False))
    assert task.status == "completed"
    assert (task.progress.failed_sessions, task.progress.migrated_sessions) == (1, 1)
    assert task.recent_conflicts[0].resolution == "refused"
    assert [e.code for e in task.recent_errors] == ["conflict"]
    assert (await target.get_events("f1"))[-1].data == {"side": "target", "i": 1}


async def test_validation_names_each_difference(
    source: SessionManager,
    target: SessionManager,
    make_migration: MakeMigration,
    target_server: EmbeddedRedis,
    namespace: str,
) -> None:
    ids = await populate(source, 6, 3)
    migration = await make_migration()
    task_id = await migration.start_full_migration(validate_after=False)
    await migration.wait(task_id)
    assert (await migration.validate_migration(task_id)).ok
    raw = aioredis.Redis.from_url(target_server.url, decode_responses=True)
    keys = target.keys
    try:
        await raw.hset(keys.session(ids[0]).meta, "state", "tampered")
        await raw.hdel(keys.session(ids[1]).agents, "bob")
        await raw.xdel(keys.session(ids[2]).events, "0-3")
        await raw.delete(*keys.session(ids[3]).all)
    finally:
        await raw.aclose()
    await target.create_session("zed", session_id="only-on-target")
    report = await migration.validate_migration(task_id)
    found = {m.session_id: (m.problem, m.fields) for m in report.mismatches}
    assert found == {
        ids[0]: ("different", ["state"]),
        ids[1]: ("different", ["agents"]),
        ids[2]: ("different", ["event_count", "events_sha1"]),
        ids[3]: ("missing_on_target", []),
        "only-on-target": ("missing_on_source", []),
    }
    assert (report.total_checked, report.passed, report.failed) == (7, 2, 5)
    assert (await raw_session(target_server.url, namespace, ids[4]))["meta"]


async def test_merge_keeps_the_target_events_the_source_has_trimmed_since(
    make_manager: Callable[..., Awaitable[SessionManager]],
    target: SessionManager,
    make_migration: MakeMigration,
) -> None:
    trimming = await make_manager(max_events_per_session=10, index_refresh_ms=0)
    sid = await trimming.create_session("alice", session_id="m3")
    for i in range(5):
        key = "early" if i == 1 else None
        await trimming.emit_event(sid, {"type": "modified", "data": {"i": i}}, "alice", idempotency_key=key)
    first = await make_migration()
    await first.wait(await first.start_selective_migration([sid]))
    for i in range(5, 12):
        await trimming.emit_event(sid, {"type": "modified", "data": {"i": i}}, "alice")
    on_source = [e.seq for e in await trimming.get_events(sid)]
    assert 1 < on_source[0] <= 6  # trimmed, yet overlapping what the target holds (1..6)
    migration, task_id = await migrate_one(make_migration, sid, "merge")
    merged = await target.get_events(sid)
    assert [e.seq for e in merged] == list(range(1, on_source[-1] + 1))  # the union by seq, gapless
    assert [e.data for e in merged[-len(on_source) :]] == [e.data for e in await trimming.get_events(sid)]
    [conflict] = await migration.get_conflicts(task_id)
    assert conflict.resolution == "source" and conflict.detail.startswith("kept ")
    # The kept events' idempotency keys still answer (the source dropped "early" when it trimmed seq 3).
    retry = await target.emit_event(
        sid, {"type": "modified", "data": {"i": 1}}, "alice", idempotency_key="early"
    )
    assert retry == 3 and (await target.get_session(sid)).last_seq == on_source[-1]


async def test_a_different_session_under_the_same_id_is_never_taken_for_unchanged(
    source: SessionManager,
    target: SessionManager,
    make_migration: MakeMigration,
    target_server: EmbeddedRedis,
) -> None:
    # Same id, seq, version and update time on both sides (as two creates in one millisecond would give):
    # only the creation token tells them apart.
    await source.create_session("alice", session_id="twin", metadata={"side": "source"})
    await target.create_session("carol", session_id="twin", metadata={"side": "target"})
    updated = await source.client.hget(source.keys.session("twin").meta, "updated")
    client = aioredis.Redis.from_url(target_server.url)
    try:
        await client.hset(target.keys.session("twin").meta, "updated", updated)
    finally:
        await client.aclose()
    migration, task_id = await migrate_one(make_migration, "twin", "source-wins")
    assert (await target.get_session("twin")).metadata == {"side": "source"}
    [conflict] = await migration.get_conflicts(task_id)
    assert conflict.resolution == "source"
