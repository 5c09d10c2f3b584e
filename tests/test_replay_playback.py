"""Playback: filters, seek, pacing by recorded time scaled by speed."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from huddle import (
    InvalidReplayOptionsError,
    ReplayConfig,
    ReplayFrame,
    ReplayNotFoundError,
    ReplayOptions,
    SessionManager,
    SessionReplay,
)


async def record_mixed(manager: SessionManager, replay: SessionReplay, gap: float = 0.0) -> str:
    """a1 and a2 alternate 'modified' events, a1 breaks and fixes the state; returns the replay id."""
    sid = await manager.create_session("a1", record=True)
    await manager.join_session(sid, "a2")
    for n in range(60):
        actor = "a1" if n % 2 else "a2"
        await manager.emit_event(sid, {"type": "modified", "data": {"n": n}}, actor)
        if n == 30:
            await manager.emit_event(
                sid, {"type": "broke", "state_transition": {"from": "working", "to": "broken"}}, "a1"
            )
            await manager.emit_event(
                sid, {"type": "fixed", "state_transition": {"from": "broken", "to": "working"}}, "a2"
            )
        if gap:
            await asyncio.sleep(gap)
    return await replay.stop_recording(sid)


@pytest.fixture
async def replay(manager: SessionManager) -> SessionReplay:
    replay = SessionReplay(manager, ReplayConfig(snapshot_every_frames=8))
    yield replay  # type: ignore[misc]
    await replay.close()


async def collect(replay: SessionReplay, replay_id: str, options: ReplayOptions) -> list[ReplayFrame]:
    frames: list[ReplayFrame] = []
    session = await replay.start_replay(replay_id, options)
    await replay.play_replay(session, lambda frame, n: frames.append(frame))
    return frames


async def test_event_type_filter_delivers_only_those_types_with_the_full_state(
    manager: SessionManager, replay: SessionReplay
) -> None:
    replay_id = await record_mixed(manager, replay)
    frames = await collect(replay, replay_id, ReplayOptions(speed=0, event_types=("broke", "fixed")))
    assert [(f.event.type, f.state.state) for f in frames] == [("broke", "broken"), ("fixed", "working")]
    assert frames[0].state.agents == ("a1", "a2")


async def test_agent_filter_delivers_only_that_agents_events(
    manager: SessionManager, replay: SessionReplay
) -> None:
    replay_id = await record_mixed(manager, replay)
    frames = await collect(replay, replay_id, ReplayOptions(speed=0, agents=("a2",)))
    assert frames and {f.event.actor for f in frames} == {"a2"}
    assert len([f for f in frames if f.event.type == "modified"]) == 30


async def test_seq_range_filter_is_inclusive(manager: SessionManager, replay: SessionReplay) -> None:
    replay_id = await record_mixed(manager, replay)
    frames = await collect(replay, replay_id, ReplayOptions(speed=0, from_seq=20, to_seq=41))
    assert [f.seq for f in frames] == list(range(20, 42))


async def test_time_range_filter_uses_recorded_event_times(
    manager: SessionManager, replay: SessionReplay
) -> None:
    replay_id = await record_mixed(manager, replay, gap=0.004)
    everything = await collect(replay, replay_id, ReplayOptions(speed=0))
    start, end = everything[15].at, everything[45].at
    frames = await collect(replay, replay_id, ReplayOptions(speed=0, start_time=start, end_time=end))
    assert frames == [f for f in everything if start <= f.at <= end]
    assert frames[0].at >= start and frames[-1].at <= end


async def test_seek_to_a_seq_returns_the_state_there_and_playback_continues_from_it(
    manager: SessionManager, replay: SessionReplay
) -> None:
    replay_id = await record_mixed(manager, replay)
    everything = await collect(replay, replay_id, ReplayOptions(speed=0))
    session = await replay.start_replay(replay_id, ReplayOptions(speed=0))
    broke = next(f for f in everything if f.event.type == "broke")
    found = await replay.seek(session, seq=broke.seq)
    assert found == broke and found.state.state == "broken"
    rest: list[ReplayFrame] = []
    await replay.play_replay(session, lambda frame, n: rest.append(frame))
    assert rest == [f for f in everything if f.seq >= broke.seq]


async def test_seek_to_a_time_returns_the_last_frame_at_or_before_it(
    manager: SessionManager, replay: SessionReplay
) -> None:
    replay_id = await record_mixed(manager, replay, gap=0.004)
    everything = await collect(replay, replay_id, ReplayOptions(speed=0))
    target = everything[40]
    session = await replay.start_replay(replay_id)
    found = await replay.seek(session, at=target.at + timedelta(microseconds=500))
    assert found is not None
    assert found == [f for f in everything if f.at_ms <= target.at_ms][-1]


async def test_paced_playback_waits_the_recorded_gaps_divided_by_speed(
    manager: SessionManager, replay: SessionReplay
) -> None:
    replay_id = await record_mixed(manager, replay, gap=0.003)
    now = [100.0]
    delivered_at: list[tuple[float, int]] = []

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    session = await replay.start_replay(replay_id, ReplayOptions(speed=4))
    await replay.play_replay(
        session, lambda f, n: delivered_at.append((now[0], f.at_ms)), sleep=fake_sleep, clock=lambda: now[0]
    )
    origin_clock, origin_at = delivered_at[0]
    for clock, at_ms in delivered_at:
        assert clock == pytest.approx(origin_clock + (at_ms - origin_at) / 1000 / 4, abs=1e-9)


async def test_faster_speed_plays_the_same_recording_in_proportionally_less_time(
    manager: SessionManager, replay: SessionReplay
) -> None:
    replay_id = await record_mixed(manager, replay, gap=0.006)
    info = await replay.get_replay(replay_id)
    assert info is not None
    span = info.duration_seconds

    async def timed(speed: float) -> float:
        session = await replay.start_replay(replay_id, ReplayOptions(speed=speed))
        started = time.perf_counter()
        await replay.play_replay(session, lambda frame, n: None)
        return time.perf_counter() - started

    slow, fast = await timed(1.0), await timed(4.0)
    assert slow >= span * 0.95  # pacing never runs ahead of the recorded timing
    assert fast >= span / 4 * 0.95
    assert fast < slow


async def test_async_frame_callbacks_are_awaited_in_order(
    manager: SessionManager, replay: SessionReplay
) -> None:
    replay_id = await record_mixed(manager, replay)
    seen: list[int] = []

    async def on_frame(frame: ReplayFrame, n: int) -> None:
        await asyncio.sleep(0)
        seen.append(n)

    session = await replay.start_replay(replay_id, ReplayOptions(speed=None))
    count = await replay.play_replay(session, on_frame)
    assert seen == list(range(count)) and count > 60


async def test_bad_options_and_unknown_replays_raise_typed_errors(replay: SessionReplay) -> None:
    with pytest.raises(InvalidReplayOptionsError):
        ReplayOptions(speed=-1)
    with pytest.raises(InvalidReplayOptionsError):
        ReplayOptions(from_seq=10, to_seq=5)
    with pytest.raises(InvalidReplayOptionsError):
        ReplayOptions(event_types=("no spaces",))
    with pytest.raises(ReplayNotFoundError):
        await replay.start_replay("rp-missing")
