"""SessionGracefulShutdown in-process: phases, draining, checkpoints, recovery data, forced shutdowns."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from huddle import (
    ConfigError,
    RecoveryDataError,
    SessionGracefulShutdown,
    SessionManager,
    ShutdownConfig,
    ShutdownError,
    ShutdownEvent,
    ShutdownPhase,
    ShuttingDownError,
)

MODIFIED = {
    "type": "modified",
    "change_info": {"element_type": "function", "entity_ids": ["f1"], "operation": "modified"},
}
MakeManager = Callable[..., Awaitable[SessionManager]]
MakeShutdown = Callable[..., SessionGracefulShutdown]


@pytest.fixture
async def make_shutdown(namespace: str) -> AsyncIterator[MakeShutdown]:
    """Shutdown coordinators on the test namespace with their own instance id, closed after the test."""
    made: list[SessionGracefulShutdown] = []
    instance = f"w-{uuid.uuid4().hex[:8]}"

    def build(**overrides: Any) -> SessionGracefulShutdown:
        values: dict[str, Any] = {"instance_id": instance, "namespace": namespace, "handle_signals": False}
        values.update(overrides)
        coordinator = SessionGracefulShutdown(ShutdownConfig(**values))
        made.append(coordinator)
        return coordinator

    yield build
    for coordinator in made:
        await coordinator.close()


@pytest.fixture
async def raw(redis_server: Any) -> AsyncIterator[Any]:
    """A plain redis-py client on the test server (to pause it or to inspect keys)."""
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.execute_command("CLIENT", "UNPAUSE")
    await client.aclose()


class Health:
    """A health component as the shutdown sees it: readiness it can turn off, a shutdown it calls."""

    def __init__(self) -> None:
        self.ready = True
        self.closed = False

    def mark_not_ready(self, reason: str) -> None:
        self.ready = False

    async def shutdown(self) -> None:
        self.closed = True


class HangingComponent:
    """A component whose shutdown never returns by itself (it even swallows the first cancellation)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def shutdown(self) -> None:
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            await self.release.wait()


class Recorder:
    """A replay component as the shutdown sees it: the sessions it records, stop and start."""

    def __init__(self, sessions: list[str]) -> None:
        self.recording = list(sessions)
        self.started: list[str] = []
        self.closed = False

    def active_recordings(self) -> list[str]:
        return list(self.recording)

    async def stop_recording(self, session_id: str) -> str:
        self.recording.remove(session_id)
        return f"r-{session_id}"

    async def start_recording(self, session_id: str) -> None:
        self.started.append(session_id)

    async def close(self) -> None:
        self.closed = True


def phases_of(events: list[ShutdownEvent]) -> list[str]:
    return [e.phase.value for e in events if e.kind == "phase"] + [
        e.phase.value for e in events if e.phase is ShutdownPhase.FORCED and e.kind == "error"
    ]


async def test_status_is_none_before_any_shutdown(
    make_shutdown: MakeShutdown, manager: SessionManager
) -> None:
    coordinator = await make_shutdown().initialize(session_manager=manager)
    assert coordinator.get_shutdown_status() is None
    assert coordinator.is_shutdown_in_progress() is False


async def test_a_graceful_shutdown_passes_every_phase_in_order(
    make_shutdown: MakeShutdown, manager: SessionManager
) -> None:
    coordinator = await make_shutdown().initialize(session_manager=manager)
    events: list[ShutdownEvent] = []
    coordinator.on_event(events.append)
    status = await coordinator.shutdown(reason="Maintenance")
    assert phases_of(events) == ["initiated", "draining", "checkpointing", "cleanup", "complete"]
    assert status.phase is ShutdownPhase.COMPLETE
    assert status.exit_code == 0
    assert status.reason == "Maintenance"
    assert set(status.phase_seconds) == {"initiated", "draining", "checkpointing", "cleanup"}
    assert manager.closed


async def test_every_session_joined_here_gets_a_new_shutdown_checkpoint(
    make_shutdown: MakeShutdown, make_manager: MakeManager
) -> None:
    manager, reader = await make_manager(), await make_manager()
    busy = await manager.create_session("a1")
    for _ in range(3):
        await manager.emit_event(busy, MODIFIED, "a1")
    quiet = await manager.create_session("a2")
    await manager.checkpoint(quiet)
    elsewhere = await reader.create_session("other-agent")
    coordinator = await make_shutdown().initialize(session_manager=manager)
    status = await coordinator.shutdown()
    assert status.sessions_checkpointed == 2
    for sid in (busy, quiet):
        newest = (await reader.get_checkpoints(sid, limit=1))[0]
        assert newest.reason == "shutdown"
        assert newest.seq == (await reader.get_session(sid)).last_seq
    assert [cp.reason for cp in await reader.get_checkpoints(elsewhere)] == []


async def test_draining_refuses_new_work_while_an_in_flight_event_finishes(
    make_shutdown: MakeShutdown, manager: SessionManager, raw: Any
) -> None:
    sid = await manager.create_session("a1")
    health = Health()
    coordinator = await make_shutdown().initialize(session_manager=manager, health_check=health)
    draining = asyncio.Event()
    coordinator.on_event(
        lambda e: draining.set() if e.phase is ShutdownPhase.DRAINING and e.kind == "progress" else None
    )
    await raw.execute_command("CLIENT", "PAUSE", 20000, "WRITE")  # holds the next emit inside Redis
    in_flight = asyncio.create_task(manager.emit_event(sid, MODIFIED, "a1"))
    await asyncio.sleep(0)
    assert manager.in_flight == 1
    stopping = asyncio.create_task(coordinator.shutdown())
    await draining.wait()
    assert health.ready is False
    with pytest.raises(ShuttingDownError):
        await manager.emit_event(sid, MODIFIED, "a1")
    with pytest.raises(ShuttingDownError):
        await manager.create_session("a2")
    assert coordinator.get_shutdown_status().phase is ShutdownPhase.DRAINING  # type: ignore[union-attr]
    await raw.execute_command("CLIENT", "UNPAUSE")
    acknowledged = await in_flight
    status = await stopping
    assert status.phase is ShutdownPhase.COMPLETE
    assert status.in_flight_at_drain == 1
    data = await coordinator.get_recovery_data()
    assert data is not None
    assert data.sessions[0].checkpoint_seq == acknowledged + 1


async def test_recovery_data_lists_sessions_agents_and_checkpoints(
    make_shutdown: MakeShutdown, make_manager: MakeManager
) -> None:
    manager = await make_manager()
    sid = await manager.create_session("a1")
    await manager.join_session(sid, "a2")
    coordinator = await make_shutdown().initialize(session_manager=manager)
    await coordinator.shutdown(reason="deploy")
    later = await make_shutdown().initialize(session_manager=await make_manager())
    data = await later.get_recovery_data()
    assert data is not None
    assert data.v == 1
    assert data.reason == "deploy"
    assert [(s.session_id, s.agents) for s in data.sessions] == [(sid, ["a1", "a2"])]
    assert data.checkpoint_ids == {sid: "cp-3"}


async def test_recovery_data_is_invisible_to_session_listings(
    make_shutdown: MakeShutdown, make_manager: MakeManager, raw: Any
) -> None:
    manager = await make_manager()
    sid = await manager.create_session("a1")
    await (await make_shutdown().initialize(session_manager=manager)).shutdown()
    reader = await make_manager()
    assert await reader.list_active_sessions() == [sid]
    meta_keys = [key async for key in raw.scan_iter(match=reader.keys.session_pattern())]
    assert meta_keys == [reader.keys.session(sid).meta]
    await reader.perform_maintenance()
    assert await (await make_shutdown().initialize(session_manager=reader)).get_recovery_data() is not None


async def test_clear_recovery_data_removes_the_document(
    make_shutdown: MakeShutdown, make_manager: MakeManager
) -> None:
    manager = await make_manager()
    await manager.create_session("a1")
    await (await make_shutdown().initialize(session_manager=manager)).shutdown()
    later = await make_shutdown().initialize(session_manager=await make_manager())
    assert await later.clear_recovery_data() is True
    assert await later.get_recovery_data() is None
    assert await later.clear_recovery_data() is False


async def test_unreadable_recovery_data_raises_a_typed_error(
    make_shutdown: MakeShutdown, manager: SessionManager, raw: Any
) -> None:
    coordinator = await make_shutdown().initialize(session_manager=manager)
    key = manager.keys.recovery(coordinator.config.instance_id)
    await raw.set(key, '{"v": 99}')
    with pytest.raises(RecoveryDataError, match="version 99"):
        await coordinator.get_recovery_data()
    await raw.set(key, "not json")
    with pytest.raises(RecoveryDataError):
        await coordinator.get_recovery_data()


async def test_recordings_in_progress_are_stopped_and_listed_for_recovery(
    make_shutdown: MakeShutdown, manager: SessionManager
) -> None:
    sid = await manager.create_session("a1")
    recorder = Recorder([sid])
    coordinator = await make_shutdown().initialize(session_manager=manager, session_replay=recorder)
    status = await coordinator.shutdown()
    assert recorder.recording == []
    assert recorder.closed
    assert status.recordings_preserved == 1
    data = await coordinator.get_recovery_data()
    assert data is not None
    assert [(r.session_id, r.replay_id, r.status) for r in data.recordings] == [(sid, f"r-{sid}", "stopped")]


async def test_resume_adopts_live_sessions_and_restarts_recordings(
    make_shutdown: MakeShutdown, make_manager: MakeManager
) -> None:
    manager = await make_manager()
    live = await manager.create_session("a1")
    finished = await manager.create_session("a2")
    coordinator = await make_shutdown().initialize(session_manager=manager, session_replay=Recorder([live]))
    await coordinator.shutdown()
    other = await make_manager()
    await other.complete_session(finished, "a2")
    restarted = await make_manager()
    recorder = Recorder([])
    report = await make_shutdown().initialize(session_manager=restarted, session_replay=recorder)
    report = await report.resume()
    assert report.sessions_adopted == [live]
    assert report.sessions_gone == [finished]
    assert restarted.local_members == {live: {"a1"}}
    assert recorder.started == [live]
    assert report.recordings_resumed == [live]


async def test_a_hanging_component_leads_to_a_forced_shutdown(
    make_shutdown: MakeShutdown, manager: SessionManager
) -> None:
    sid = await manager.create_session("a1")
    hanging = HangingComponent()
    coordinator = await make_shutdown(
        grace_period=1.5,
        drain_timeout=0.5,
        checkpoint_timeout=0.5,
        cleanup_timeout=0.5,
        force_close_timeout=0.2,
    ).initialize(session_manager=manager, health_check=hanging)
    status = await coordinator.shutdown()
    hanging.release.set()
    assert status.phase is ShutdownPhase.FORCED
    assert status.exit_code == 1
    assert "cleanup did not finish" in (status.forced_reason or "")
    assert status.sessions_checkpointed == 1
    assert manager.closed
    data = await coordinator.get_recovery_data()
    assert data is not None
    assert data.checkpoint_ids.keys() == {sid}
    assert (data.phase, data.graceful) == (ShutdownPhase.FORCED, False)


async def test_force_during_a_shutdown_skips_to_forced(
    make_shutdown: MakeShutdown, manager: SessionManager, raw: Any
) -> None:
    sid = await manager.create_session("a1")
    coordinator = await make_shutdown().initialize(session_manager=manager)
    draining = asyncio.Event()
    coordinator.on_event(lambda e: draining.set() if e.phase is ShutdownPhase.DRAINING else None)
    await raw.execute_command("CLIENT", "PAUSE", 20000, "WRITE")
    blocked = asyncio.create_task(manager.emit_event(sid, MODIFIED, "a1"))
    stopping = asyncio.create_task(coordinator.shutdown())
    await draining.wait()
    coordinator.force("operator gave up")
    status = await stopping
    await raw.execute_command("CLIENT", "UNPAUSE")
    assert status.phase is ShutdownPhase.FORCED
    assert status.forced_reason == "operator gave up"
    assert status.sessions_checkpointed == 0
    assert manager.closed
    blocked.cancel()
    await asyncio.gather(blocked, return_exceptions=True)


async def test_a_non_graceful_shutdown_is_forced_at_once(
    make_shutdown: MakeShutdown, manager: SessionManager
) -> None:
    await manager.create_session("a1")
    coordinator = await make_shutdown().initialize(session_manager=manager)
    status = await coordinator.shutdown(graceful=False, preserve_data=False)
    assert status.phase is ShutdownPhase.FORCED
    assert status.sessions_checkpointed == 0
    assert status.recovery_written is False
    assert manager.closed


async def test_preserve_data_false_takes_no_checkpoint(
    make_shutdown: MakeShutdown, make_manager: MakeManager
) -> None:
    manager = await make_manager()
    sid = await manager.create_session("a1")
    coordinator = await make_shutdown().initialize(session_manager=manager)
    status = await coordinator.shutdown(preserve_data=False)
    assert status.phase is ShutdownPhase.COMPLETE
    assert await (await make_manager()).get_checkpoints(sid) == []
    assert await coordinator.get_recovery_data() is None


async def test_a_second_shutdown_call_joins_the_first(
    make_shutdown: MakeShutdown, manager: SessionManager
) -> None:
    coordinator = await make_shutdown().initialize(session_manager=manager)
    first, second = await asyncio.gather(
        coordinator.shutdown(reason="one"), coordinator.shutdown(reason="two")
    )
    assert first == second
    assert first.reason == "one"


async def test_initialize_after_a_shutdown_started_is_refused(
    make_shutdown: MakeShutdown, manager: SessionManager
) -> None:
    coordinator = await make_shutdown().initialize(session_manager=manager)
    await coordinator.shutdown()
    with pytest.raises(ShutdownError):
        await coordinator.initialize(session_manager=manager)


async def test_sigterm_starts_a_graceful_shutdown(
    make_shutdown: MakeShutdown, manager: SessionManager
) -> None:
    coordinator = await make_shutdown(handle_signals=True).initialize(session_manager=manager)
    assert coordinator.handled_signals == ["SIGTERM", "SIGINT", "SIGQUIT"]
    os.kill(os.getpid(), signal.SIGTERM)
    status = await coordinator.wait()
    assert status.signal == "SIGTERM"
    assert status.phase is ShutdownPhase.COMPLETE
    assert coordinator.handled_signals == []


def test_phase_timeouts_must_fit_in_the_grace_period() -> None:
    with pytest.raises(ConfigError, match="checkpoint_timeout"):
        ShutdownConfig(grace_period=5, checkpoint_timeout=10)


def test_shutdown_config_rejects_an_unknown_signal_and_a_bad_instance_id() -> None:
    with pytest.raises(ConfigError, match="signals"):
        ShutdownConfig(signals=("SIGKILL",))
    with pytest.raises(ConfigError, match="instance_id"):
        ShutdownConfig(instance_id="has space")


async def test_bad_shutdown_options_raise_config_error(
    make_shutdown: MakeShutdown, manager: SessionManager
) -> None:
    coordinator = await make_shutdown().initialize(session_manager=manager)
    with pytest.raises(ConfigError, match="reason"):
        await coordinator.shutdown(reason="")
    assert coordinator.get_shutdown_status() is None
