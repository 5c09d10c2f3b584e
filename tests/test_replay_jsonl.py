"""JSON Lines export and import: a recording moves to another namespace and replays identically."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from huddle import (
    InvalidReplayOptionsError,
    ReplayConfig,
    ReplayError,
    ReplayIntegrityError,
    ReplayOptions,
    SessionManager,
    SessionReplay,
)

MakeManager = Callable[..., Awaitable[SessionManager]]


async def recorded(manager: SessionManager, replay: SessionReplay) -> str:
    sid = await manager.create_session("a1", record=True, metadata={"ticket": "BUG-1"})
    await manager.join_session(sid, "a2")
    for n in range(40):
        await manager.emit_event(sid, {"type": "modified", "data": {"n": n}}, "a2" if n % 3 else "a1")
    await manager.emit_event(
        sid, {"type": "broke", "state_transition": {"from": "working", "to": "broken"}}, "a1"
    )
    return await replay.stop_recording(sid)


async def export(replay: SessionReplay, replay_id: str) -> list[str]:
    return [line async for line in replay.export_replay(replay_id)]


async def test_export_is_a_header_then_one_frame_per_line(manager: SessionManager) -> None:
    async with SessionReplay(manager) as replay:
        replay_id = await recorded(manager, replay)
        lines = await export(replay, replay_id)
        info = await replay.get_replay(replay_id)
    header = json.loads(lines[0])
    assert header["format"] == "huddle-replay/1" and header["replay_id"] == replay_id
    assert info is not None and len(lines) == 1 + info.frames
    assert [json.loads(line)["f"]["q"] for line in lines[1:]] == list(range(1, info.last_seq + 1))


async def test_import_into_another_namespace_verifies_and_replays_identically(
    make_manager: MakeManager,
) -> None:
    source = await make_manager()
    target = await make_manager(namespace="imported" + source.config.namespace)
    async with (
        SessionReplay(source, ReplayConfig(snapshot_every_frames=9)) as here,
        SessionReplay(target) as there,
    ):
        replay_id = await recorded(source, here)
        lines = await export(here, replay_id)
        assert await there.import_replay(lines) == replay_id
        assert (await there.verify_replay(replay_id)).ok
        original = await here.frames(await here.start_replay(replay_id, ReplayOptions(speed=0)))
        imported = await there.frames(await there.start_replay(replay_id, ReplayOptions(speed=0)))
        assert imported == original
        assert await export(there, replay_id) == lines
        assert [r.replay_id for r in await there.list_replays()] == [replay_id]


async def test_importing_a_tampered_export_is_refused_and_writes_nothing(make_manager: MakeManager) -> None:
    source = await make_manager()
    target = await make_manager(namespace="tampered" + source.config.namespace)
    async with SessionReplay(source) as here, SessionReplay(target) as there:
        replay_id = await recorded(source, here)
        lines = await export(here, replay_id)
        frame = json.loads(lines[12])
        frame["f"]["a"] = "intruder"
        lines[12] = json.dumps(frame)
        with pytest.raises(ReplayIntegrityError) as caught:
            await there.import_replay(lines)
        assert caught.value.details["frame"] == 11  # line 0 is the header
        assert await there.get_replay(replay_id) is None and await there.list_replays() == []


async def test_importing_with_a_dropped_frame_is_refused(make_manager: MakeManager) -> None:
    source = await make_manager()
    target = await make_manager(namespace="dropped" + source.config.namespace)
    async with SessionReplay(source) as here, SessionReplay(target) as there:
        replay_id = await recorded(source, here)
        lines = await export(here, replay_id)
        with pytest.raises(ReplayIntegrityError):
            await there.import_replay(lines[:20] + lines[21:])


async def test_importing_an_existing_replay_id_is_refused(manager: SessionManager) -> None:
    async with SessionReplay(manager) as replay:
        replay_id = await recorded(manager, replay)
        lines = await export(replay, replay_id)
        with pytest.raises(ReplayError):
            await replay.import_replay(lines)
        copy_id = await replay.import_replay(lines, replay_id="rp-copy")
        assert (await replay.verify_replay(copy_id)).ok


async def test_importing_something_that_is_not_an_export_raises(manager: SessionManager) -> None:
    async with SessionReplay(manager) as replay:
        with pytest.raises(InvalidReplayOptionsError):
            await replay.import_replay(['{"hello": "world"}'])
        with pytest.raises(InvalidReplayOptionsError):
            await replay.import_replay([])
        assert await replay.list_replays() == []


async def test_integers_beyond_64_bits_survive_recording_playback_and_export_exactly(
    make_manager: MakeManager,
) -> None:
    source = await make_manager()
    target = await make_manager(namespace="bigint" + source.config.namespace)
    async with SessionReplay(source) as here, SessionReplay(target) as there:
        sid = await source.create_session("a1", record=True, metadata={"budget": 10**30, "ratio": 0.25})
        await source.emit_event(
            sid, {"type": "modified", "data": {"big": 2**70, "neg": -(2**65), "f": 1e16}}, "a1"
        )
        replay_id = await here.stop_recording(sid)
        assert (await here.verify_replay(replay_id)).ok
        frames = await here.frames(await here.start_replay(replay_id))
        assert frames[-1].event.body["data"] == {"big": 2**70, "neg": -(2**65), "f": 1e16}
        assert frames[-1].state.metadata == {"budget": 10**30, "ratio": 0.25}
        await there.import_replay(await export(here, replay_id))
        assert await there.frames(await there.start_replay(replay_id)) == frames
