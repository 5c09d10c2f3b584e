"""Export a recording as JSON Lines (a header line, then one frame a line) and import it elsewhere.

Frames keep their chain hashes; the JSON of each frame is canonical, so the importer reproduces the exact
bytes that were hashed and the imported recording verifies like the original. An import is checked in full
before anything is written: a tampered file is refused with ``ReplayIntegrityError``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import zstandard

from ..errors import InvalidReplayOptionsError, ReplayError, ReplayIntegrityError
from ..ids import check_id
from .codec import (
    FORMAT,
    DecodeCursor,
    FrameError,
    decode_lines,
    frame_from_export,
    frame_starts_segment,
    frame_to_export,
    genesis_hash,
    pack_segment,
    unpack_segment,
)
from .meta import check_meta
from .playback import BLOCKS_PER_READ, initial_state_of

if TYPE_CHECKING:
    from .storage import ReplayStorage

HEADER_FIELDS = ("sid", "status", "reason", "started", "ended", "init", "md", "comp", "delta", "raw", "frames",
                 "segments", "first_seq", "last_seq", "first_at", "last_at", "head")  # fmt: skip


async def export_lines(storage: ReplayStorage, replay_id: str, meta: dict[str, str]) -> AsyncIterator[str]:
    """The recording (whose stored ``meta`` was read) as JSON Lines without newlines: header, then every frame."""
    header = {"format": FORMAT, "replay_id": replay_id, **{k: meta[k] for k in HEADER_FIELDS if k in meta}}
    yield json.dumps(header, separators=(",", ":"), sort_keys=True)
    index = await storage.read_index(replay_id)
    block = 0
    while block < len(index):
        blobs = await storage.read_segments(replay_id, block, block + BLOCKS_PER_READ - 1)
        if not blobs:
            break
        for offset, blob in enumerate(blobs):
            for line in unpack_segment(blob, index[block + offset]["i"]):
                yield frame_to_export(line)
        block += len(blobs)


def _header(line: str) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except ValueError as exc:
        raise InvalidReplayOptionsError(f"not a huddle replay export: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidReplayOptionsError(f"not a huddle replay export (format must be {FORMAT!r})")
    missing = [name for name in ("replay_id", "sid", "init", "started", "head") if name not in header]
    if missing:
        raise InvalidReplayOptionsError(f"replay export header lacks {', '.join(missing)}")
    return header


async def import_lines(
    storage: ReplayStorage,
    lines: Iterable[str],
    *,
    compression_level: int,
    retention_days: float,
    replay_id: str | None = None,
) -> str:
    """Import an export (header + frames); returns the replay id. Verifies everything before writing."""
    iterator = iter(line for line in lines if line.strip())
    first = next(iterator, None)
    if first is None:
        raise InvalidReplayOptionsError("the replay export is empty")
    header = _header(first)
    target = check_id(replay_id or str(header["replay_id"]), "replay id")
    meta = {name: str(header[name]) for name in HEADER_FIELDS if name in header}
    check_meta(meta)
    initial = initial_state_of(meta)
    frame_lines: list[bytes] = []
    for number, text in enumerate(iterator, start=2):
        try:
            frame_lines.append(frame_from_export(text))
        except ValueError as exc:
            raise InvalidReplayOptionsError(f"line {number} is not a replay frame: {exc}") from None
    cursor = DecodeCursor(0, genesis_hash(meta["sid"], initial), initial)
    blocks: list[list[bytes]] = []
    index: list[dict[str, Any]] = []
    try:
        for line in frame_lines:
            if not blocks or frame_starts_segment(line):
                blocks.append([])
                index.append({"i": cursor.index, "p": cursor.chain.hex()})
            (frame,) = decode_lines([line], cursor, validate=True)
            blocks[-1].append(line)
            if len(blocks[-1]) == 1:
                index[-1].update(q=frame.seq, t=frame.at_ms)
    except FrameError as exc:
        raise ReplayIntegrityError(
            f"refusing the import: {exc.message}", frame=exc.frame, reason=exc.reason
        ) from None
    if str(header.get("frames", len(frame_lines))) != str(len(frame_lines)):
        raise ReplayIntegrityError(f"the export says {header['frames']} frames but holds {len(frame_lines)}")
    if frame_lines and cursor.chain.hex() != meta["head"]:
        raise ReplayIntegrityError("the last frame does not match the exported chain head")
    compressor = zstandard.ZstdCompressor(level=compression_level) if meta.get("comp") == "1" else None
    segments = [pack_segment(block, compressor) for block in blocks]
    meta.update(
        status="complete", reason=meta.get("reason") or "imported", frames=str(len(frame_lines)),
        segments=str(len(segments)), stored=str(sum(len(s) for s in segments)), imported=str(int(time.time() * 1000)),
    )  # fmt: skip
    started = int(meta["started"])
    retention = int(retention_days * 86_400_000)
    if not await storage.import_recording(target, meta, segments, index, started, retention):
        raise ReplayError(f"replay {target!r} already exists here", replay_id=target)
    return target
