"""Recording from the session's event stream: every event, the exact state after it, trimming-proof."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from huddle import (
    ConfigError,
    EventsTrimmedError,
    ReplayConfig,
    ReplayError,
    ReplayOptions,
    SessionManager,
    SessionReplay,
    StateConflictError,
)

MakeManager = Callable[..., Awaitable[SessionManager]]


def modified(n: int) -> dict[str, Any]:
    return {
        "type": "modified",
        "change_info": {"element_type": "file", "entity_ids": [f"src/mod{n}.py"], "operation": "edit"},
    }


def transition(src: str, dst: str) -> dict[str, Any]:
    return {"type": "broke" if dst == "broken" else "fixed", "state_transition": {"from": src, "to": dst}}


async def all_frames(replay: SessionReplay, replay_id: str) -> list[Any]:
    session = await replay.start_replay(replay_id, ReplayOptions(speed=0))
    return await replay.frames(session)


async def test_recording_of_three_agents_in_separate_managers_reproduces_the_state_after_every_event(
    make_manager: MakeManager,
) -> None:
    owner = await make_manager(max_events_per_session=50, checkpoint_interval=7)
    others = [await make_manager(max_events_per_session=50, checkpoint_interval=7) for _ in range(2)]
    async with SessionReplay(owner, ReplayConfig(snapshot_every_frames=32)) as replay:
        sid = await owner.create_session("agent-0", record=True, metadata={"feature": "auth"})
        for number, manager in enumerate(others, start=1):
            await manager.join_session(sid, f"agent-{number}")
        managers = [owner, *others]

        async def agent(number: int) -> None:
            manager, actor, rng = managers[number], f"agent-{number}", random.Random(number)
            for step in range(110):
                if rng.random() < 0.15:
                    current = (await manager.get_session(sid)).state
                    target = "broken" if current == "working" else "working"
                    # Another agent may move the state first: the script refuses, nothing is written.
                    with contextlib.suppress(StateConflictError):
                        await manager.emit_event(sid, transition(current, target), actor)
                else:
                    await manager.emit_event(sid, modified(number * 1000 + step), actor)

        await asyncio.gather(*(agent(n) for n in range(3)))
        await others[1].leave_session(sid, "agent-2")
        replay_id = await replay.stop_recording(sid)
        document = await owner.get_session(sid)
        frames: list[Any] = []
        session = await replay.start_replay(replay_id, ReplayOptions(speed=100))  # high speed, still paced
        await replay.play_replay(session, lambda frame, n: frames.append(frame))
        await owner.emit_event(sid, modified(0), "agent-0")  # the hold is gone: this emit trims the log
        assert (await owner.get_session(sid)).first_seq > document.last_seq - 50

    assert [frame.seq for frame in frames] == list(range(1, document.last_seq + 1))
    final = frames[-1].state
    assert (final.state, final.agents, final.checkpoint_id, final.metadata, final.status) == (
        document.state, tuple(sorted(document.agents)), document.last_checkpoint_id, document.metadata,
        document.status,
    )  # fmt: skip
    by_seq = {frame.seq: frame for frame in frames}
    checkpoints = [cp for cp in await owner.get_checkpoints(sid) if cp.seq <= document.last_seq]
    assert len(checkpoints) > 20
    for checkpoint in checkpoints:  # written by the scripts: the session's own record of its state
        state = by_seq[checkpoint.seq].state
        assert (state.state, list(state.agents), state.checkpoint_id, state.metadata) == (
            checkpoint.state, sorted(checkpoint.agents), checkpoint.checkpoint_id, checkpoint.metadata,
        )  # fmt: skip
    transitions = [f for f in frames if f.event.body.get("state_transition")]
    assert transitions
    for frame in transitions:  # the script only accepted it because 'from' was the state right before
        change = frame.event.body["state_transition"]
        assert by_seq[frame.seq - 1].state.state == change["from_state"]
        assert frame.state.state == change["to"]


async def test_recorded_state_equals_the_session_document_after_each_event(manager: SessionManager) -> None:
    async with SessionReplay(manager) as replay:
        sid = await manager.create_session("a1", metadata={"n": 1})
        await manager.emit_event(sid, modified(0), "a1")
        replay_id = await replay.start_recording(sid)
        expected = {}
        steps: list[Callable[[], Awaitable[Any]]] = [
            lambda: manager.join_session(sid, "a2"),
            lambda: manager.emit_event(sid, modified(1), "a2"),
            lambda: manager.emit_event(sid, transition("working", "broken"), "a1"),
            lambda: manager.checkpoint(sid, actor="a1"),
            lambda: manager.leave_session(sid, "a2"),
            lambda: manager.emit_event(sid, transition("broken", "working"), "a1"),
            lambda: manager.complete_session(sid, "a1"),
        ]
        for step in steps:
            await step()
            document = await manager.get_session(sid)
            expected[document.last_seq] = (
                document.state, tuple(sorted(document.agents)), document.last_checkpoint_id, document.status,
            )  # fmt: skip
        replay_id = await replay.stop_recording(sid)
        frames = await all_frames(replay, replay_id)
    recorded = {f.seq: (f.state.state, f.state.agents, f.state.checkpoint_id, f.state.status) for f in frames}
    assert frames[0].seq == 3  # recording started after the session's events 1..2
    for seq, state in expected.items():
        assert recorded[seq] == state


async def test_a_stalled_recording_keeps_events_from_being_trimmed_until_it_has_read_them(
    make_manager: MakeManager,
) -> None:
    manager = await make_manager(max_events_per_session=10)
    async with SessionReplay(manager) as replay:
        sid = await manager.create_session("a1")
        await replay.start_recording(sid, follow=False)  # nothing reads the stream until stop_recording
        for n in range(120):
            await manager.emit_event(sid, modified(n), "a1")
        assert (await manager.get_session(sid)).first_seq == 2  # seq 1 came before the recording
        replay_id = await replay.stop_recording(sid)
        last = (await manager.get_session(sid)).last_seq
        frames = await all_frames(replay, replay_id)
        assert [f.seq for f in frames] == list(range(2, last + 1))
        await manager.emit_event(sid, modified(999), "a1")  # hold released: trimming resumes
        assert (await manager.get_session(sid)).first_seq > 100


async def test_without_a_recording_the_same_workload_trims_the_log(make_manager: MakeManager) -> None:
    manager = await make_manager(max_events_per_session=10)
    sid = await manager.create_session("a1")
    for n in range(120):
        await manager.emit_event(sid, modified(n), "a1")
    assert (await manager.get_session(sid)).first_seq > 100


VANISHING_RECORDER = """
import asyncio, os, sys
from huddle import ReplayConfig, SessionManager, SessionManagerConfig, SessionReplay

async def main() -> None:
    manager = await SessionManager(SessionManagerConfig(redis_url=sys.argv[1], namespace=sys.argv[2])).connect()
    replay = SessionReplay(manager, ReplayConfig(hold_lease_seconds=2))
    await replay.start_recording(sys.argv[3], follow=False)
    os._exit(0)  # the process dies without stopping the recording or releasing its hold

asyncio.run(main())
"""


async def test_a_hold_whose_recorder_process_died_stops_protecting_the_log_when_its_lease_ends(
    make_manager: MakeManager,
) -> None:
    manager = await make_manager(max_events_per_session=10)
    sid = await manager.create_session("a1")
    config = manager.config
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", VANISHING_RECORDER, config.redis_url or "", config.namespace, sid
    )
    assert await process.wait() == 0
    for n in range(30):
        await manager.emit_event(sid, modified(n), "a1")
    assert (await manager.get_session(sid)).first_seq == 2  # held by the dead recorder
    await asyncio.sleep(2.2)  # the lease is server time: nothing to await but its end
    await manager.emit_event(sid, modified(99), "a1")
    assert (await manager.get_session(sid)).first_seq > 20


async def test_events_emitted_by_another_manager_while_recording_are_recorded(
    make_manager: MakeManager,
) -> None:
    recorder_side, other_side = await make_manager(), await make_manager()
    async with SessionReplay(recorder_side) as replay:
        sid = await recorder_side.create_session("a1", record=True)
        await other_side.join_session(sid, "b1")
        seqs = await asyncio.gather(*(other_side.emit_event(sid, modified(n), "b1") for n in range(40)))
        replay_id = await replay.stop_recording(sid)
        frames = await all_frames(replay, replay_id)
    recorded = {f.seq for f in frames if f.event.actor == "b1" and f.event.type == "modified"}
    assert recorded == set(seqs)


async def test_record_event_captures_the_stream_up_to_that_event_without_a_follow_task(
    manager: SessionManager,
) -> None:
    async with SessionReplay(manager) as replay:
        sid = await manager.create_session("a1")
        await replay.start_recording(sid, follow=False)
        for n in range(5):
            await manager.emit_event(sid, modified(n), "a1")
        [event] = await manager.get_events(sid, from_seq=4, to_seq=4)
        await replay.record_event(sid, event, await manager.get_session(sid))
        info = await replay.get_replay(replay.recording(sid) or "")
        assert info is not None and info.last_seq == 4 and info.frames == 3


async def test_recording_a_session_twice_in_one_replay_object_is_refused(manager: SessionManager) -> None:
    async with SessionReplay(manager) as replay:
        sid = await manager.create_session("a1")
        await replay.start_recording(sid)
        with pytest.raises(ReplayError):
            await replay.start_recording(sid)


async def test_stopping_a_session_that_is_not_recorded_raises(manager: SessionManager) -> None:
    async with SessionReplay(manager) as replay:
        with pytest.raises(ReplayError):
            await replay.stop_recording("s-nothing")


async def test_create_session_with_record_needs_an_attached_replay(manager: SessionManager) -> None:
    with pytest.raises(ReplayError):
        await manager.create_session("a1", record=True)
    assert await manager.list_active_sessions() == []


async def test_recording_from_the_start_after_trimming_is_refused(make_manager: MakeManager) -> None:
    manager = await make_manager(max_events_per_session=10)
    async with SessionReplay(manager) as replay:
        sid = await manager.create_session("a1")
        for n in range(30):
            await manager.emit_event(sid, modified(n), "a1")
        with pytest.raises(EventsTrimmedError):
            await replay.start_recording(sid, from_start=True)


async def test_a_recording_stops_by_itself_at_max_replay_duration(manager: SessionManager) -> None:
    async with SessionReplay(manager, ReplayConfig(max_replay_duration=1, block_ms=100)) as replay:
        sid = await manager.create_session("a1")
        replay_id = await replay.start_recording(sid)
        await manager.emit_event(sid, modified(1), "a1")
        for _ in range(100):
            info = await replay.get_replay(replay_id)
            if info is not None and info.status == "complete":
                break
            await asyncio.sleep(0.05)
        assert info is not None and info.status == "complete" and info.stop_reason == "max_duration"
        assert replay.recording(sid) is None


async def test_closing_the_replay_finishes_its_recordings_with_every_event(manager: SessionManager) -> None:
    replay = SessionReplay(manager)
    sid = await manager.create_session("a1")
    replay_id = await replay.start_recording(sid)
    for n in range(25):
        await manager.emit_event(sid, modified(n), "a1")
    await replay.close()
    await replay.close()
    reader = SessionReplay(manager)
    info = await reader.get_replay(replay_id)
    await reader.close()
    last = (await manager.get_session(sid)).last_seq
    assert info is not None and info.status == "complete"
    assert (info.first_seq, info.last_seq, info.frames) == (2, last, last - 1)


async def test_a_recording_ends_by_itself_when_its_session_is_gone(manager: SessionManager) -> None:
    async with SessionReplay(manager, ReplayConfig(block_ms=50)) as replay:
        sid = await manager.create_session("a1", record=True)
        await manager.emit_event(sid, modified(1), "a1")
        replay_id = replay.recording(sid)
        assert replay_id is not None
        for _ in range(200):  # the recorder stores what it read within flush_interval_ms
            info = await replay.get_replay(replay_id)
            if info is not None and info.last_seq == 2:
                break
            await asyncio.sleep(0.02)
        await manager.client.delete(*manager.keys.session(sid).all)  # as if its TTL ran out
        for _ in range(200):
            info = await replay.get_replay(replay_id)
            if info is not None and info.status == "complete":
                break
            await asyncio.sleep(0.02)
        assert info is not None and info.stop_reason == "session_ended" and info.last_seq == 2
        assert (await replay.verify_replay(replay_id)).ok


async def test_deleting_a_running_recording_stops_it_and_removes_it(manager: SessionManager) -> None:
    async with SessionReplay(manager) as replay:
        sid = await manager.create_session("a1", record=True)
        replay_id = replay.recording(sid)
        assert replay_id is not None
        assert await replay.delete_replay(replay_id) is True
        assert replay.recording(sid) is None and await replay.get_replay(replay_id) is None
        await replay.start_recording(sid)  # the session can be recorded again


def test_invalid_replay_config_raises_a_config_error() -> None:
    with pytest.raises(ConfigError):
        ReplayConfig(snapshot_interval=0)
    with pytest.raises(ConfigError):
        ReplayConfig(unknown_option=True)  # type: ignore[call-arg]
