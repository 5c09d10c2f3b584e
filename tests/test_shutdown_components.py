"""Shutdown with the real components: health readiness, replay recordings, migration syncs, and resuming them."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from huddle import (
    EmbeddedRedis,
    MigrationConfig,
    SessionGracefulShutdown,
    SessionHealthCheck,
    SessionManager,
    SessionMigration,
    SessionReplay,
    ShutdownConfig,
    ShutdownPhase,
)

MakeManager = Callable[..., Awaitable[SessionManager]]
MODIFIED = {
    "type": "modified",
    "change_info": {"element_type": "function", "entity_ids": ["f1"], "operation": "modified"},
}


def coordinator(namespace: str, instance: str) -> SessionGracefulShutdown:
    return SessionGracefulShutdown(
        ShutdownConfig(instance_id=instance, namespace=namespace, handle_signals=False)
    )


async def test_readiness_turns_false_as_soon_as_draining_starts(
    make_manager: MakeManager, namespace: str
) -> None:
    manager = await make_manager()
    health = SessionHealthCheck()
    await health.initialize(session_manager=manager)
    assert (await health.check_readiness()).ready
    shutdown = await coordinator(namespace, "w-health").initialize(
        session_manager=manager, health_check=health
    )
    seen: list[bool] = []
    shutdown.on_event(
        lambda e: (
            seen.append(health.not_ready_reason is None)
            if (e.phase, e.kind) == (ShutdownPhase.DRAINING, "progress")
            else None
        )
    )
    status = await shutdown.shutdown()
    assert status.phase is ShutdownPhase.COMPLETE
    assert seen and not any(seen)
    assert health.closed


async def test_a_replay_recording_is_finished_and_restarted_on_the_next_start(
    make_manager: MakeManager, namespace: str
) -> None:
    manager = await make_manager()
    replay = SessionReplay(manager)
    sid = await manager.create_session("a1")
    replay_id = await replay.start_recording(sid)
    last = 0
    for _ in range(5):
        last = await manager.emit_event(sid, MODIFIED, "a1")
    shutdown = await coordinator(namespace, "w-replay").initialize(
        session_manager=manager, session_replay=replay
    )
    status = await shutdown.shutdown()
    assert status.recordings_preserved == 1
    restarted = await make_manager()
    async with SessionReplay(restarted) as later_replay:
        info = await later_replay.get_replay(replay_id)
        assert info is not None and info.status != "recording" and info.last_seq >= last
        report = await (
            await coordinator(namespace, "w-replay").initialize(session_manager=restarted)
        ).resume(session_replay=later_replay)
        assert report.recordings_resumed == [sid]
        assert later_replay.recording(sid) is not None
        assert report.sessions_adopted == [sid]


async def test_a_cross_instance_sync_stops_at_its_cursor_and_resumes(
    make_manager: MakeManager, namespace: str, redis_server: EmbeddedRedis
) -> None:
    manager = await make_manager()
    sid = await manager.create_session("a1")
    for _ in range(3):
        await manager.emit_event(sid, MODIFIED, "a1")
    target = f"{namespace}-copy"
    settings = MigrationConfig(
        source_url=redis_server.url, target_url=redis_server.url, namespace=namespace, target_namespace=target
    )
    migration = await SessionMigration(settings).connect()
    await migration.setup_cross_instance_sync(sid, "target", "periodic")
    await migration.sync_session(sid)
    instance = f"w-{uuid.uuid4().hex[:6]}"
    shutdown = await coordinator(namespace, instance).initialize(
        session_manager=manager, session_migration=migration
    )
    status = await shutdown.shutdown()
    assert status.tasks_preserved == 1
    data = await (
        await coordinator(namespace, instance).initialize(session_manager=await make_manager())
    ).get_recovery_data()
    assert data is not None
    ((task,),) = [data.tasks]
    assert (task.kind, task.details["session_id"], task.cursor) == ("sync", sid, 4)
    async with SessionMigration(settings) as later:
        later_shutdown = await coordinator(namespace, instance).initialize(
            session_manager=await make_manager()
        )
        report = await later_shutdown.resume(session_migration=later)
        assert report.tasks_resumed == [task.task_id]
        assert [link.session_id for link in later.list_cross_instance_sessions()] == [sid]
