"""Integrity: tampering with, losing or reordering stored frames is detected and named."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import zstandard

from huddle import (
    ReplayConfig,
    ReplayFrame,
    ReplayIntegrityError,
    ReplayOptions,
    SessionManager,
    SessionReplay,
)
from huddle.backend.connection import create_client

BLOCK = 10  # frames per stored block in these tests


@pytest.fixture
async def recorded(manager: SessionManager) -> AsyncIterator[tuple[SessionReplay, str]]:
    replay = SessionReplay(manager, ReplayConfig(snapshot_every_frames=BLOCK))
    sid = await manager.create_session("a1", record=True)
    for n in range(45):
        await manager.emit_event(sid, {"type": "modified", "data": {"n": n}}, "a1")
    replay_id = await replay.stop_recording(sid)
    yield replay, replay_id
    await replay.close()


async def rewrite_block(
    manager: SessionManager, replay_id: str, block: int, change: Callable[[list[bytes]], list[bytes]]
) -> None:
    """Edit the frame lines of one stored block directly in Redis, as an attacker (or a bad disk) would."""
    client = create_client(manager.config, decode_responses=False)
    key = manager.keys.replay(replay_id, "segments")
    blob = await client.lindex(key, block)
    lines = zstandard.ZstdDecompressor().decompress(blob[1:]).split(b"\n")
    lines = change(lines)
    await client.lset(key, block, blob[:1] + zstandard.ZstdCompressor().compress(b"\n".join(lines)))
    await client.aclose()


async def test_an_untouched_recording_verifies(recorded: tuple[SessionReplay, str]) -> None:
    replay, replay_id = recorded
    report = await replay.verify_replay(replay_id)
    assert report.ok and report.first_bad_frame is None and report.frames_checked > 45


async def test_an_altered_frame_is_named_by_verify(
    manager: SessionManager, recorded: tuple[SessionReplay, str]
) -> None:
    replay, replay_id = recorded

    def alter(lines: list[bytes]) -> list[bytes]:
        lines[3] = lines[3].replace(b'"a":"a1"', b'"a":"a9"')
        return lines

    await rewrite_block(manager, replay_id, 2, alter)
    report = await replay.verify_replay(replay_id)
    assert not report.ok and report.first_bad_frame == 2 * BLOCK + 3
    assert report.reason is not None and "hash chain" in report.reason


async def test_an_altered_state_checksum_is_named_by_verify(
    manager: SessionManager, recorded: tuple[SessionReplay, str]
) -> None:
    replay, replay_id = recorded

    def alter(lines: list[bytes]) -> list[bytes]:
        lines[0] = lines[0].replace(b'"st":"active"', b'"st":"completed"')
        return lines

    await rewrite_block(manager, replay_id, 1, alter)
    report = await replay.verify_replay(replay_id)
    assert not report.ok and report.first_bad_frame == BLOCK


async def test_a_deleted_frame_is_named_as_missing(
    manager: SessionManager, recorded: tuple[SessionReplay, str]
) -> None:
    replay, replay_id = recorded
    await rewrite_block(manager, replay_id, 1, lambda lines: lines[:4] + lines[5:])
    report = await replay.verify_replay(replay_id)
    assert not report.ok and report.first_bad_frame == BLOCK + 4
    assert report.reason is not None and "missing" in report.reason


async def test_two_swapped_frames_are_named_as_out_of_order(
    manager: SessionManager, recorded: tuple[SessionReplay, str]
) -> None:
    replay, replay_id = recorded

    def swap(lines: list[bytes]) -> list[bytes]:
        lines[6], lines[7] = lines[7], lines[6]
        return lines

    await rewrite_block(manager, replay_id, 0, swap)
    report = await replay.verify_replay(replay_id)
    assert not report.ok and report.first_bad_frame == 6
    assert report.reason is not None and "out of order" in report.reason


async def test_a_deleted_block_is_named_by_its_first_frame(
    manager: SessionManager, recorded: tuple[SessionReplay, str]
) -> None:
    replay, replay_id = recorded
    client = create_client(manager.config, decode_responses=False)
    key = manager.keys.replay(replay_id, "segments")
    await client.lset(key, 2, b"gone")
    await client.lrem(key, 1, b"gone")
    await client.aclose()
    report = await replay.verify_replay(replay_id)
    assert not report.ok and report.first_bad_frame == 2 * BLOCK
    assert report.reason is not None and "missing" in report.reason


async def test_corrupt_block_bytes_are_named_by_the_blocks_first_frame(
    manager: SessionManager, recorded: tuple[SessionReplay, str]
) -> None:
    replay, replay_id = recorded
    client = create_client(manager.config, decode_responses=False)
    key = manager.keys.replay(replay_id, "segments")
    blob = await client.lindex(key, 3)
    await client.lset(key, 3, blob[:20] + bytes(b ^ 0xFF for b in blob[20:40]) + blob[40:])
    await client.aclose()
    report = await replay.verify_replay(replay_id)
    assert not report.ok and report.first_bad_frame == 3 * BLOCK


async def test_a_truncated_recording_is_detected(
    manager: SessionManager, recorded: tuple[SessionReplay, str]
) -> None:
    replay, replay_id = recorded
    client = create_client(manager.config, decode_responses=False)
    await client.rpop(manager.keys.replay(replay_id, "segments"))
    await client.aclose()
    report = await replay.verify_replay(replay_id)
    assert not report.ok and report.first_bad_frame == 4 * BLOCK


async def test_validated_playback_stops_with_an_integrity_error_at_the_bad_frame(
    manager: SessionManager, recorded: tuple[SessionReplay, str]
) -> None:
    replay, replay_id = recorded

    def alter(lines: list[bytes]) -> list[bytes]:
        lines[5] = lines[5].replace(b'"n":', b'"m":')
        return lines

    await rewrite_block(manager, replay_id, 1, alter)
    delivered: list[ReplayFrame] = []
    session = await replay.start_replay(replay_id, ReplayOptions(speed=0))
    with pytest.raises(ReplayIntegrityError) as caught:
        await replay.play_replay(session, lambda frame, n: delivered.append(frame))
    assert caught.value.details["frame"] == BLOCK + 5
    assert [f.index for f in delivered] == list(range(BLOCK + 5))


async def test_playback_without_validation_does_not_check_the_chain(
    manager: SessionManager, recorded: tuple[SessionReplay, str]
) -> None:
    replay, replay_id = recorded

    def alter(lines: list[bytes]) -> list[bytes]:
        lines[5] = lines[5].replace(b'"n":', b'"m":')
        return lines

    await rewrite_block(manager, replay_id, 1, alter)
    session = await replay.start_replay(replay_id, ReplayOptions(speed=0, validate_state=False))
    count = await replay.play_replay(session, lambda frame, n: None)
    assert count == session.info.frames
