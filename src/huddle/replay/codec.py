"""Frame codec: session state folding, deltas, checksums, the hash chain and compressed frame blocks.

A frame is one line ``<hash> <canonical JSON>``. Its JSON holds the frame index ``i``, the event (``q`` seq,
``t`` time, ``y`` type, ``a`` actor, ``b`` body), either the full state ``s`` (snapshot) or only what changed
since the previous frame ``d`` (delta), and ``c``, the checksum of the state the frame produces. The hash is
``blake2b(previous hash + JSON)``, starting from a genesis hash over the recording's initial state: altering,
dropping or reordering any frame breaks the chain at that frame.

Frames are stored in blocks (segments): each starts with a snapshot, followed by deltas, and is compressed
as one zstd frame, so compression sees the redundancy between consecutive events and seeking decodes at most
one snapshot plus a bounded number of deltas.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

import orjson
import zstandard

from ..errors import ReplayIntegrityError
from .models import RecordedEvent, ReplayFrame, ReplayState

FORMAT = "huddle-replay/1"
X_FLAG = '"x":1,'
RAW, ZSTD = b"\x00", b"\x01"
HASH_HEX = 32


def canonical_json(value: Any) -> str:
    """Deterministic compact JSON with sorted keys (orjson): the bytes hashes are computed over.

    orjson is 10-20x faster than the stdlib here; values it refuses (integers over 64 bits) fall back to the
    stdlib with the same layout. Either way the same value always gives the same text."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False)


_LONG_NUMBER = re.compile(rb"\d{19}")


def needs_exact(raw: bytes) -> bool:
    """True if ``raw`` may hold an integer beyond 64 bits, which orjson would parse as a float."""
    return len(raw) - len(raw.translate(None, b"0123456789")) >= 19 and _LONG_NUMBER.search(raw) is not None


def parse_json(data: bytes | str) -> Any:
    """Parse JSON exactly: orjson, or the stdlib where orjson would be lossy (integers beyond 64 bits)."""
    raw = data.encode() if isinstance(data, str) else data
    if not needs_exact(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


class FrameError(ReplayIntegrityError):
    """A frame failed a check; ``frame`` is its index in the recording."""

    def __init__(self, frame: int, reason: str) -> None:
        super().__init__(f"frame {frame}: {reason}", frame=frame, reason=reason)
        self.frame = frame
        self.reason = reason


# -- state ----------------------------------------------------------------------------------------------------
def state_checksum(state: ReplayState) -> str:
    """Checksum of everything a frame's state holds (seq, status, state, agents, checkpoint, metadata)."""
    text = "\x1f".join(
        (str(state.seq), state.status, state.state, ",".join(state.agents), state.checkpoint_id or "",
         state.metadata_json)
    )  # fmt: skip
    return blake2b(text.encode(), digest_size=8).hexdigest()


def genesis_hash(session_id: str, initial: ReplayState) -> bytes:
    """The hash the chain starts from: it binds the session id and the initial state."""
    text = f"{FORMAT}\x1f{session_id}\x1f{canonical_json(snapshot_of(initial))}"
    return blake2b(text.encode(), digest_size=16).digest()


def apply_event(state: ReplayState, event: RecordedEvent) -> ReplayState:
    """The session state after ``event``, folded exactly as the session scripts change it."""
    status, name, agents, checkpoint = state.status, state.state, state.agents, state.checkpoint_id
    kind, body = event.type, event.body
    if kind == "start":
        status, agents = "active", (event.actor,)
        data = body.get("data") or {}
        name = str(data.get("initial_state", name))
    elif kind == "join":
        status = "active"
        if event.actor not in agents:
            agents = tuple(sorted((*agents, event.actor)))
    elif kind == "leave":
        agents = tuple(agent for agent in agents if agent != event.actor)
    elif kind == "complete":
        status = "completed"
    elif kind == "checkpoint":
        data = body.get("data") or {}
        checkpoint = data.get("checkpoint_id", checkpoint)
    transition = body.get("state_transition")
    if transition:
        name = transition.get("to", name)
    return ReplayState(event.seq, status, name, agents, checkpoint, state.metadata_json)


def snapshot_of(state: ReplayState) -> dict[str, Any]:
    """The full state as stored in a snapshot frame (seq comes from the frame)."""
    return {"st": state.status, "s": state.state, "a": list(state.agents), "cp": state.checkpoint_id,
            "md": parse_json(state.metadata_json)}  # fmt: skip


def state_from_snapshot(snapshot: dict[str, Any], seq: int) -> ReplayState:
    """Inverse of ``snapshot_of``."""
    return ReplayState(
        seq,
        snapshot["st"],
        snapshot["s"],
        tuple(snapshot["a"]),
        snapshot["cp"],
        canonical_json(snapshot["md"]),
    )


def diff_states(old: ReplayState, new: ReplayState) -> dict[str, Any]:
    """What changed from ``old`` to ``new`` (seq excluded: every frame carries its own)."""
    delta: dict[str, Any] = {}
    if new.status != old.status:
        delta["st"] = new.status
    if new.state != old.state:
        delta["s"] = new.state
    if new.agents != old.agents:
        before, after = set(old.agents), set(new.agents)
        if after - before:
            delta["a+"] = sorted(after - before)
        if before - after:
            delta["a-"] = sorted(before - after)
    if new.checkpoint_id != old.checkpoint_id:
        delta["cp"] = new.checkpoint_id
    if new.metadata_json != old.metadata_json:
        delta["md"] = parse_json(new.metadata_json)
    return delta


def apply_delta(state: ReplayState, delta: dict[str, Any], seq: int) -> ReplayState:
    """Inverse of ``diff_states``."""
    if not delta:
        return ReplayState(
            seq, state.status, state.state, state.agents, state.checkpoint_id, state.metadata_json
        )
    agents = state.agents
    if "a+" in delta or "a-" in delta:
        agents = tuple(sorted((set(agents) - set(delta.get("a-", ()))) | set(delta.get("a+", ()))))
    metadata = canonical_json(delta["md"]) if "md" in delta else state.metadata_json
    return ReplayState(
        seq, delta.get("st", state.status), delta.get("s", state.state), agents,
        delta.get("cp", state.checkpoint_id), metadata,
    )  # fmt: skip


# -- encoding -------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class EncodedFrame:
    """One encoded frame and what the encoder measured for it."""

    line: bytes
    index: int
    seq: int
    at_ms: int
    starts_segment: bool
    raw_bytes: int
    """Size of the same frame with the full state instead of a delta (the naive storage)."""
    chain: bytes
    """The chain hash before this frame (a segment's seek entry keeps it)."""


class FrameEncoder:
    """Turns (event, state after it) pairs into chained frame lines and decides where segments start."""

    def __init__(
        self,
        session_id: str,
        initial: ReplayState,
        *,
        delta: bool = True,
        snapshot_every: int = 128,
        snapshot_interval_ms: int = 300_000,
    ) -> None:
        self.state = initial
        self.chain = genesis_hash(session_id, initial)
        self.index = 0
        self.delta = delta
        self.snapshot_every = snapshot_every
        self.snapshot_interval_ms = snapshot_interval_ms
        self._in_segment = 0
        self._segment_at = 0
        self._snapshot_key: tuple[str, str, tuple[str, ...], str | None, str] | None = None
        self._snapshot_text = ""
        self._checksum_rest = b""
        self._snapshot_exact = False

    def encode(self, event: RecordedEvent, state: ReplayState) -> EncodedFrame:
        """Encode the next frame (``state`` is the session right after ``event``)."""
        starts = (
            self._in_segment == 0
            or self._in_segment >= self.snapshot_every
            or event.at_ms - self._segment_at >= self.snapshot_interval_ms
        )
        snapshot_json, rest = self._snapshot_parts(state)
        checksum = blake2b(b"%d" % event.seq + rest, digest_size=8).hexdigest()
        # Canonical JSON built by hand in sorted key order (a b c d i q s t y): byte-identical to
        # canonical_json(frame) (tests check it), several times faster for the recorder's hot path.
        body_json = canonical_json(event.body)
        # "x":1 marks the rare frame holding an integer beyond 64 bits: readers parse it with the stdlib.
        exact = needs_exact(body_json.encode())
        head = f'{{"a":{_dumps(event.actor)},"b":{body_json},"c":"{checksum}",'
        tail = f'"i":{self.index},"q":{event.seq},'
        if starts or not self.delta:
            exact = exact or self._snapshot_exact
            end = f'"t":{event.at_ms},{X_FLAG if exact else ""}"y":{_dumps(event.type)}}}'
            text = f'{head}{tail}"s":{snapshot_json},{end}'
            raw = len(text)
        else:
            delta = diff_states(self.state, state)
            delta_json = canonical_json(delta) if delta else "{}"
            exact = exact or (bool(delta) and needs_exact(delta_json.encode()))
            end = f'"t":{event.at_ms},{X_FLAG if exact else ""}"y":{_dumps(event.type)}}}'
            text = f'{head}"d":{delta_json},{tail}{end}'
            raw = len(text) - len(delta_json) + len(snapshot_json)
        body = text.encode()
        before = self.chain
        self.chain = blake2b(before + body, digest_size=16).digest()
        encoded = EncodedFrame(
            self.chain.hex().encode() + b" " + body, self.index, event.seq, event.at_ms, starts, raw, before
        )
        if starts:
            self._in_segment, self._segment_at = 0, event.at_ms
        self._in_segment += 1
        self.index += 1
        self.state = state
        return encoded

    def _snapshot_parts(self, state: ReplayState) -> tuple[str, bytes]:
        """Snapshot JSON and checksum tail of ``state``; recomputed only when more than the seq changed."""
        key = (state.status, state.state, state.agents, state.checkpoint_id, state.metadata_json)
        if key != self._snapshot_key:
            self._snapshot_key = key
            self._snapshot_exact = needs_exact(state.metadata_json.encode())
            self._snapshot_text, self._checksum_rest = (
                canonical_json(snapshot_of(state)),
                _checksum_rest(state),
            )
        return self._snapshot_text, self._checksum_rest


def _dumps(text: str) -> str:
    return orjson.dumps(text).decode()


def pack_segment(lines: Sequence[bytes], compressor: zstandard.ZstdCompressor | None) -> bytes:
    """One stored block: a format byte, then the frame lines (zstd-compressed when a compressor is given)."""
    payload = b"\n".join(lines)
    if compressor is None:
        return RAW + payload
    return ZSTD + compressor.compress(payload)


def unpack_segment(blob: bytes, first_index: int) -> list[bytes]:
    """The frame lines of a stored block; an undecodable block is reported as its first frame."""
    try:
        if blob[:1] == ZSTD:
            payload = zstandard.ZstdDecompressor().decompress(blob[1:])
        elif blob[:1] == RAW:
            payload = blob[1:]
        else:
            raise ValueError(f"unknown block format {blob[:1]!r}")
    except (zstandard.ZstdError, ValueError) as exc:
        raise FrameError(first_index, f"frame block is corrupt ({exc})") from None
    return payload.split(b"\n") if payload else []


# -- decoding -------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class DecodeCursor:
    """Where decoding stands: next frame index, chain hash and state so far."""

    index: int
    chain: bytes
    state: ReplayState


def decode_lines(lines: Sequence[bytes], cursor: DecodeCursor, *, validate: bool) -> list[ReplayFrame]:
    """Decode consecutive frame lines from ``cursor`` (advancing it); ``validate`` checks chain and checksums.

    Raises ``FrameError`` naming the first frame that is missing, out of order, altered or inconsistent."""
    frames: list[ReplayFrame] = []
    index, chain, state = cursor.index, cursor.chain, cursor.state
    loads, digest, append = orjson.loads, blake2b, frames.append
    # Checksum of a state = blake2b(seq + rest): 'rest' only changes when a frame changes more than the seq.
    rest = _checksum_rest(state)
    for line in lines:
        try:
            obj = loads(memoryview(line)[HASH_HEX + 1 :])
            if "x" in obj:  # integers beyond 64 bits: orjson would have made them floats
                obj = json.loads(line[HASH_HEX + 1 :])
            found = obj["i"]
        except (ValueError, KeyError, TypeError, IndexError, StopIteration):
            raise FrameError(index, "frame is not valid JSON (altered)") from None
        if found != index:
            if isinstance(found, int) and found > index:
                raise FrameError(index, f"frame {index} is missing (found frame {found} in its place)")
            raise FrameError(index, f"frames are out of order (found frame {found} where {index} belongs)")
        if validate:
            hashed = digest(chain + line[HASH_HEX + 1 :], digest_size=16)
            if hashed.hexdigest().encode() != line[:HASH_HEX]:
                raise FrameError(index, "content does not match the hash chain (altered or reordered)")
            chain = hashed.digest()
        try:
            seq = obj["q"]
            if seq.__class__ is not int:
                raise TypeError("'q' as an integer")
            event = RecordedEvent(seq, obj["y"], obj["a"], obj["t"], obj["b"])
            if "s" in obj:
                state = state_from_snapshot(obj["s"], seq)
                rest = _checksum_rest(state)
            else:
                delta = obj["d"]
                state = apply_delta(state, delta, seq)
                if delta:
                    rest = _checksum_rest(state)
        except (KeyError, TypeError) as exc:
            raise FrameError(index, f"frame is malformed (missing {exc})") from None
        if validate and digest(b"%d" % seq + rest, digest_size=8).hexdigest() != obj["c"]:
            raise FrameError(index, "the state it produces does not match its checksum")
        append(ReplayFrame(index, event, state, obj["c"]))
        index += 1
    if not validate and frames:
        chain = bytes.fromhex(lines[-1][:HASH_HEX].decode())
    cursor.index, cursor.chain, cursor.state = index, chain, state
    return frames


def _checksum_rest(state: ReplayState) -> bytes:
    """Everything ``state_checksum`` hashes after the seq."""
    parts = (
        "",
        state.status,
        state.state,
        ",".join(state.agents),
        state.checkpoint_id or "",
        state.metadata_json,
    )
    return "\x1f".join(parts).encode()


_EXPORT_HEAD, _EXPORT_MID = '{"h":"', '","f":'


def frame_to_export(line: bytes) -> str:
    """A stored frame line as one JSON Lines object ``{"h": hash, "f": frame}``, keeping the frame's bytes."""
    return _EXPORT_HEAD + line[:HASH_HEX].decode() + _EXPORT_MID + line[HASH_HEX + 1 :].decode() + "}"


def frame_from_export(text: str) -> bytes:
    """Inverse of ``frame_to_export``: the exact hashed bytes (a re-serialized line is re-canonicalized)."""
    start = len(_EXPORT_HEAD) + HASH_HEX
    if text.startswith(_EXPORT_HEAD) and text[start : start + len(_EXPORT_MID)] == _EXPORT_MID:
        frame = text[start + len(_EXPORT_MID) : text.rstrip().rindex("}")]
        if not isinstance(parse_json(frame), dict):
            raise ValueError("'f' must be a frame object")
        return text[len(_EXPORT_HEAD) : start].encode() + b" " + frame.encode()
    obj = json.loads(text)
    if not isinstance(obj, dict) or not isinstance(obj.get("h"), str) or not isinstance(obj.get("f"), dict):
        raise ValueError("a frame line needs 'h' (hash) and 'f' (frame)")
    if len(obj["h"]) != HASH_HEX:
        raise ValueError("frame hash must be 32 hex characters")
    digest: str = obj["h"]
    return digest.encode() + b" " + canonical_json(obj["f"]).encode()


def frame_starts_segment(line: bytes) -> bool:
    """True for a snapshot frame (blocks start at snapshots)."""
    return "s" in parse_json(line[HASH_HEX + 1 :])
