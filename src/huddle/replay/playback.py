"""Playback: decode a recording block by block, filter, pace by recorded time, seek, verify."""

from __future__ import annotations

import asyncio
import bisect
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ReplayIntegrityError
from .codec import DecodeCursor, FrameError, decode_lines, genesis_hash, state_from_snapshot, unpack_segment
from .models import ReplayFrame, ReplayInfo, ReplayOptions, ReplayState
from .storage import ReplayStorage

BLOCKS_PER_READ = 16

Sleep = Callable[[float], Awaitable[Any]]
Clock = Callable[[], float]


def initial_state_of(meta: dict[str, str]) -> ReplayState:
    """The recording's initial state from its meta hash."""
    init = json.loads(meta["init"])
    return state_from_snapshot(init, int(init.get("seq", 0)))


@dataclass
class ReplaySession:
    """A recording opened for playback (the spec's ``ReplaySession``): info, options and a position."""

    info: ReplayInfo
    options: ReplayOptions
    index: list[dict[str, Any]]
    """Seek entries, one per stored block."""
    initial: ReplayState
    genesis: bytes
    position: int = 0
    """Frame index playback starts from (moved by ``seek``)."""
    delivered: int = field(default=0)

    @property
    def replay_id(self) -> str:
        """The recording's id."""
        return self.info.replay_id


def _block_for(session: ReplaySession, frame_index: int) -> int:
    starts = [entry["i"] for entry in session.index]
    return max(bisect.bisect_right(starts, frame_index) - 1, 0)


def _block_for_key(session: ReplaySession, key: str, value: int) -> int:
    values = [entry[key] for entry in session.index]
    return max(bisect.bisect_right(values, value) - 1, 0)


async def iter_blocks(
    storage: ReplayStorage, session: ReplaySession, *, start: int, validate: bool
) -> AsyncIterator[list[ReplayFrame]]:
    """Frames from index ``start`` on, one decoded block at a time (decoding starts at the block's snapshot)."""
    if not session.index or start >= session.info.frames:
        return
    block = _block_for(session, start)
    while block < len(session.index):
        blobs = await storage.read_segments(session.replay_id, block, block + BLOCKS_PER_READ - 1)
        if not blobs:
            raise FrameError(session.index[block]["i"], "frame block is missing")
        for offset, blob in enumerate(blobs):
            entry = session.index[block + offset]
            cursor = DecodeCursor(entry["i"], bytes.fromhex(entry["p"]), session.initial)
            lines = unpack_segment(blob, entry["i"])
            try:
                frames = decode_lines(lines, cursor, validate=validate)
            except FrameError as exc:
                # Deliver the good frames before the bad one, then stop there.
                cursor = DecodeCursor(entry["i"], bytes.fromhex(entry["p"]), session.initial)
                good = decode_lines(lines[: max(exc.frame - entry["i"], 0)], cursor, validate=validate)
                yield [frame for frame in good if frame.index >= start]
                raise
            yield frames if entry["i"] >= start else [frame for frame in frames if frame.index >= start]
        block += len(blobs)


async def iter_frames(
    storage: ReplayStorage, session: ReplaySession, *, start: int, validate: bool
) -> AsyncIterator[ReplayFrame]:
    """Every frame from index ``start`` on."""
    async for frames in iter_blocks(storage, session, start=start, validate=validate):
        for frame in frames:
            yield frame


def matches(frame: ReplayFrame, options: ReplayOptions) -> bool:
    """True if ``frame`` passes the agent and event-type filters."""
    if options.event_types is not None and frame.event.type not in options.event_types:
        return False
    return options.agents is None or frame.event.actor in options.agents


def _past_end(frame: ReplayFrame, options: ReplayOptions, end_ms: int | None) -> bool:
    if options.to_seq is not None and frame.seq > options.to_seq:
        return True
    return end_ms is not None and frame.at_ms > end_ms


def start_frame(session: ReplaySession, options: ReplayOptions) -> int:
    """Block-level lower bound of the first frame the options can select (exact filtering happens while playing)."""
    start = session.position
    if options.from_seq is not None and session.index:
        start = max(start, session.index[_block_for_key(session, "q", options.from_seq)]["i"])
    if options.start_time is not None and session.index:
        start_ms = int(options.start_time.timestamp() * 1000)
        start = max(start, session.index[_block_for_key(session, "t", start_ms)]["i"])
    return start


async def play(
    storage: ReplayStorage,
    session: ReplaySession,
    on_frame: Callable[[ReplayFrame, int], Any],
    options: ReplayOptions,
    *,
    validate: bool,
    sleep: Sleep = asyncio.sleep,
    clock: Clock | None = None,
) -> int:
    """Deliver the selected frames to ``on_frame(frame, n)`` with recorded timing / speed; returns how many."""
    now = clock or asyncio.get_running_loop().time
    low_seq = options.from_seq if options.from_seq is not None else 0
    start_ms = int(options.start_time.timestamp() * 1000) if options.start_time is not None else None
    end_ms = int(options.end_time.timestamp() * 1000) if options.end_time is not None else None
    selective = options.event_types is not None or options.agents is not None
    first, speed = session.position, options.speed
    delivered = 0
    origin: tuple[float, int] | None = None
    async for block in iter_blocks(storage, session, start=start_frame(session, options), validate=validate):
        for frame in block:
            if frame.index < first or frame.event.seq < low_seq:
                continue
            if start_ms is not None and frame.event.at_ms < start_ms:
                continue
            if _past_end(frame, options, end_ms):
                session.delivered += delivered
                return delivered
            if selective and not matches(frame, options):
                continue
            if speed:
                if origin is None:
                    origin = (now(), frame.event.at_ms)
                else:
                    wait = origin[0] + (frame.event.at_ms - origin[1]) / 1000 / speed - now()
                    if wait > 0:
                        await sleep(wait)
            result = on_frame(frame, delivered)
            if result is not None and (asyncio.iscoroutine(result) or isinstance(result, asyncio.Future)):
                await result
            delivered += 1
    session.delivered += delivered
    return delivered


async def seek(
    storage: ReplayStorage, session: ReplaySession, *, seq: int | None, at_ms: int | None, validate: bool
) -> ReplayFrame | None:
    """The last frame at or before ``seq`` / ``at_ms``: one block read, one snapshot plus its deltas."""
    if not session.index:
        return None
    key, value = ("q", seq) if seq is not None else ("t", at_ms)
    assert value is not None
    block = _block_for_key(session, key, value)
    entry = session.index[block]
    blobs = await storage.read_segments(session.replay_id, block, block)
    if not blobs:
        raise FrameError(entry["i"], "frame block is missing")
    cursor = DecodeCursor(entry["i"], bytes.fromhex(entry["p"]), session.initial)
    found: ReplayFrame | None = None
    for frame in decode_lines(unpack_segment(blobs[0], entry["i"]), cursor, validate=validate):
        if (frame.seq if seq is not None else frame.at_ms) > value:
            break
        found = frame
    if found is not None:
        session.position = found.index
    return found


async def verify(
    storage: ReplayStorage, replay_id: str, meta: dict[str, str]
) -> tuple[int, FrameError | None]:
    """Walk the whole chain from genesis; returns (frames checked, first failure or None)."""
    initial = initial_state_of(meta)
    cursor = DecodeCursor(0, genesis_hash(meta["sid"], initial), initial)
    index = await storage.read_index(replay_id)
    block = 0
    while True:
        blobs = await storage.read_segments(replay_id, block, block + BLOCKS_PER_READ - 1)
        if not blobs:
            break
        for offset, blob in enumerate(blobs):
            entry = index[block + offset] if block + offset < len(index) else None
            lines: list[bytes] = []
            first, chain = cursor.index, cursor.chain.hex()
            try:
                lines = unpack_segment(blob, cursor.index)
                decode_lines(lines, cursor, validate=True)
            except FrameError as exc:
                return exc.frame, _explain(exc, lines)
            if entry is None or entry["i"] != first or entry["p"] != chain:
                return first, FrameError(first, f"the seek entry of block {block + offset} does not match it")
        block += len(blobs)
    expected = int(meta.get("frames", "0"))
    if cursor.index < expected:
        return cursor.index, FrameError(
            cursor.index, f"frames {cursor.index}..{expected - 1} are missing (the recording has {expected})"
        )
    if cursor.index > expected:
        return cursor.index, FrameError(expected, f"{cursor.index - expected} unexpected extra frames")
    if expected and meta.get("head") != cursor.chain.hex():
        return cursor.index, FrameError(expected - 1, "the last frame does not match the recorded chain head")
    for position, entry in enumerate(index):
        if not 0 <= entry["i"] < max(expected, 1):
            return cursor.index, FrameError(entry["i"], f"seek entry {position} points outside the recording")
    return cursor.index, None


def _explain(error: FrameError, lines: list[bytes]) -> FrameError:
    """Turn 'missing' into 'out of order' when the expected frame shows up later (two frames swapped)."""
    if "missing" not in error.reason:
        return error
    marker = f'"i":{error.frame},'.encode()
    if any(marker in line for line in lines):
        return FrameError(error.frame, f"frames are out of order (frame {error.frame} appears later)")
    return error


__all__ = ["ReplayIntegrityError", "ReplaySession", "iter_frames", "play", "seek", "verify"]
