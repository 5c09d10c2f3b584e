"""Cross-instance sync: real-time, periodic and manual, through a target restart, without loss or duplicates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from migration_support import make_migration, raw_session, same_session, source, target, target_server

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.errors import InvalidMigrationRequestError
from huddle.migration import MigrationConfig, SessionMigration

__all__ = ["make_migration", "source", "target", "target_server"]

MakeMigration = Callable[..., Awaitable[SessionMigration]]


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 15.0) -> None:
    """Poll ``check`` until it holds (sync runs in the background; there is nothing to await directly)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def synced(source: SessionManager, target: SessionManager, sid: str) -> bool:
    doc = await target.store.get_session(sid)
    return doc is not None and doc.last_seq == (await source.get_session(sid)).last_seq


async def test_real_time_sync_applies_source_events_in_order(
    source: SessionManager, target: SessionManager, make_migration: MakeMigration,
    redis_server: EmbeddedRedis, target_server: EmbeddedRedis, namespace: str,
) -> None:  # fmt: skip
    sid = await source.create_session("alice")
    migration = await make_migration()
    status = await migration.setup_cross_instance_sync(sid, "target", "real-time")
    assert status.sync_mode == "real-time" and status.last_synced_seq == 1
    for i in range(40):
        await source.emit_event(sid, {"type": "modified", "data": {"i": i}}, "alice")
    await until(lambda: synced(source, target, sid))
    assert [(e.seq, e.data) for e in await target.get_events(sid)] == [
        (e.seq, e.data) for e in await source.get_events(sid)
    ]
    same_session(
        await raw_session(redis_server.url, namespace, sid),
        await raw_session(target_server.url, namespace, sid),
    )
    info = migration.get_cross_instance_status(sid)
    assert info is not None and info.events_applied >= 40 and info.status == "syncing"


@pytest.fixture
async def restartable_target() -> AsyncIterator[EmbeddedRedis]:
    """A target server with an append-only file, so a SIGKILL restart keeps its data."""
    async with EmbeddedRedis(appendonly=True) as server:
        yield server


async def test_real_time_sync_survives_a_target_restart_without_loss_or_duplicates(
    source: SessionManager, redis_server: EmbeddedRedis, restartable_target: EmbeddedRedis, namespace: str
) -> None:
    sid = await source.create_session("alice")
    config = MigrationConfig(
        source_url=redis_server.url, target_url=restartable_target.url, namespace=namespace, retry_attempts=1,
        socket_timeout=2.0,
    )  # fmt: skip
    target_config = SessionManagerConfig(redis_url=restartable_target.url, namespace=namespace)
    async with SessionMigration(config) as migration, SessionManager(target_config) as target:
        await migration.setup_cross_instance_sync(sid, "target", "real-time")

        async def emit(start: int, count: int) -> None:
            for i in range(start, start + count):
                await source.emit_event(sid, {"type": "modified", "data": {"i": i}}, "alice")
                await asyncio.sleep(0.005)

        await emit(0, 30)
        await until(lambda: synced(source, target, sid))
        run_id = (await target.client.info("server"))["run_id"]
        await asyncio.gather(asyncio.to_thread(restartable_target.restart), emit(30, 60))
        await until(lambda: synced(source, target, sid), seconds=30)
        events = await target.get_events(sid)
        assert [(e.seq, e.data) for e in events] == [(e.seq, e.data) for e in await source.get_events(sid)]
        assert await target.client.xlen(target.keys.session(sid).events) == len(events)
        assert (await target.client.info("server"))["run_id"] != run_id  # it really was a new process
        info = migration.get_cross_instance_status(sid)
        assert info is not None and info.status == "syncing"


async def test_periodic_sync_catches_up_on_its_interval(
    source: SessionManager, target: SessionManager, make_migration: MakeMigration
) -> None:
    sid = await source.create_session("alice")
    migration = await make_migration(sync_interval=0.05)
    await migration.setup_cross_instance_sync(sid, "target", "periodic")
    for _ in range(5):
        await source.emit_event(sid, {"type": "modified"}, "alice")
    await until(lambda: synced(source, target, sid))
    assert [item.session_id for item in migration.list_cross_instance_sessions()] == [sid]


async def test_manual_sync_applies_only_new_events_and_is_idempotent(
    source: SessionManager, target: SessionManager, make_migration: MakeMigration
) -> None:
    sid = await source.create_session("alice")
    migration = await make_migration()
    await migration.setup_cross_instance_sync(sid, "target", "manual")
    for _ in range(3):
        await source.emit_event(sid, {"type": "modified"}, "alice")
    assert (await target.get_session(sid)).last_seq == 1
    assert await migration.sync_session(sid) == 3
    assert await migration.sync_session(sid) == 0
    assert (await target.get_session(sid)).last_seq == 4
    info = migration.get_cross_instance_status(sid)
    assert info is not None and (info.syncs, info.events_applied, info.full_copies) == (3, 4, 1)
    assert await migration.stop_cross_instance_sync(sid)
    assert not await migration.stop_cross_instance_sync(sid)
    assert migration.get_cross_instance_status(sid) is None


async def test_sync_copies_the_whole_session_when_the_target_fell_behind_trimming(
    make_manager: Callable[..., Awaitable[SessionManager]],
    target: SessionManager,
    make_migration: MakeMigration,
    redis_server: EmbeddedRedis,
    target_server: EmbeddedRedis,
    namespace: str,
) -> None:
    source = await make_manager(max_events_per_session=10)
    sid = await source.create_session("alice")
    migration = await make_migration()
    await migration.setup_cross_instance_sync(sid, "target", "manual")
    for _ in range(30):
        await source.emit_event(sid, {"type": "modified"}, "alice")
    await migration.sync_session(sid)
    info = migration.get_cross_instance_status(sid)
    assert info is not None and info.full_copies == 2
    same_session(
        await raw_session(redis_server.url, namespace, sid),
        await raw_session(target_server.url, namespace, sid),
    )


async def test_close_leaves_no_sync_task_running(
    source: SessionManager, make_migration: MakeMigration
) -> None:
    sid = await source.create_session("alice")
    migration = await make_migration(sync_interval=0.05)
    await migration.setup_cross_instance_sync(sid, "target", "real-time")
    await migration.setup_cross_instance_sync(sid, "target", "periodic")
    await migration.close()
    await migration.close()
    assert not [task for task in asyncio.all_tasks() if (task.get_name() or "").startswith("huddle-sync")]


async def test_bad_sync_requests_raise_typed_errors(
    source: SessionManager, make_migration: MakeMigration
) -> None:
    sid = await source.create_session("alice")
    migration = await make_migration()
    with pytest.raises(InvalidMigrationRequestError):
        await migration.setup_cross_instance_sync(sid, "nowhere", "real-time")
    with pytest.raises(InvalidMigrationRequestError):
        await migration.setup_cross_instance_sync(sid, "target", "sometimes")
    assert migration.list_cross_instance_sessions() == []
