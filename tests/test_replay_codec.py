"""Frame codec: deltas, snapshots, compression and the hash chain round-trip every state."""

from __future__ import annotations

import json

import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from huddle import RecordedEvent, ReplayState
from huddle.replay.codec import (
    DecodeCursor,
    FrameEncoder,
    FrameError,
    canonical_json,
    decode_lines,
    genesis_hash,
    pack_segment,
    unpack_segment,
)

names = st.text(alphabet="abcdefghij_-.", min_size=1, max_size=8)
metadata = st.dictionaries(
    st.text(max_size=6), st.one_of(st.integers(), st.text(max_size=10), st.booleans(), st.none()), max_size=4
)
states = st.builds(
    lambda status, state, agents, cp, md: (status, state, tuple(sorted(agents)), cp, canonical_json(md)),
    st.sampled_from(["active", "completed"]),
    names,
    st.frozensets(names, max_size=5),
    st.one_of(st.none(), names.map(lambda n: f"cp-{n}")),
    metadata,
)
bodies = st.dictionaries(st.sampled_from(["data", "change_info", "impact"]), metadata, max_size=2)


def encode_all(
    sequence: list[tuple[tuple[str, str, tuple[str, ...], str | None, str], dict[str, object]]],
    *,
    delta: bool,
    every: int,
    compress: bool,
) -> tuple[list[bytes], list[int], list[ReplayState], ReplayState]:
    initial = ReplayState(0, "", "", (), None, "{}")
    encoder = FrameEncoder("s-prop", initial, delta=delta, snapshot_every=every, snapshot_interval_ms=10**9)
    compressor = zstandard.ZstdCompressor() if compress else None
    blocks: list[list[bytes]] = []
    starts: list[int] = []
    expected: list[ReplayState] = []
    for number, (fields, body) in enumerate(sequence, start=1):
        state = ReplayState(number, *fields)
        frame = encoder.encode(RecordedEvent(number, "modified", "agent", 1000 + number, body), state)
        if frame.starts_segment:
            blocks.append([])
            starts.append(frame.index)
        blocks[-1].append(frame.line)
        expected.append(state)
    return [pack_segment(block, compressor) for block in blocks], starts, expected, initial


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(states, bodies), min_size=1, max_size=60),
    st.booleans(),
    st.integers(1, 9),
    st.booleans(),
)
def test_decode_of_encoded_deltas_reproduces_every_state(
    sequence: list[tuple[tuple[str, str, tuple[str, ...], str | None, str], dict[str, object]]],
    delta: bool,
    every: int,
    compress: bool,
) -> None:
    blobs, starts, expected, initial = encode_all(sequence, delta=delta, every=every, compress=compress)
    cursor = DecodeCursor(0, genesis_hash("s-prop", initial), initial)
    decoded = []
    for blob, first in zip(blobs, starts, strict=True):
        decoded.extend(decode_lines(unpack_segment(blob, first), cursor, validate=True))
    assert [frame.state for frame in decoded] == expected
    assert [frame.event.body for frame in decoded] == [body for _, body in sequence]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(states, bodies), min_size=3, max_size=30), st.data())
def test_any_altered_frame_is_named_by_the_chain(
    sequence: list[tuple[tuple[str, str, tuple[str, ...], str | None, str], dict[str, object]]],
    data: st.DataObject,
) -> None:
    blobs, _, _, initial = encode_all(sequence, delta=True, every=1000, compress=False)
    lines = unpack_segment(blobs[0], 0)
    victim = data.draw(st.integers(0, len(lines) - 1))
    lines[victim] = lines[victim].replace(b'"y":"modified"', b'"y":"modifie_"')
    cursor = DecodeCursor(0, genesis_hash("s-prop", initial), initial)
    try:
        decode_lines(lines, cursor, validate=True)
    except FrameError as exc:
        assert exc.frame == victim
    else:
        raise AssertionError("the altered frame was not detected")


def test_delta_frames_are_smaller_than_snapshots_of_the_same_state() -> None:
    sequence = [(("active", "working", ("a1", "a2"), None, canonical_json({"k": "v" * 200})), {})] * 20
    with_delta, _, _, _ = encode_all(sequence, delta=True, every=1000, compress=False)
    without, _, _, _ = encode_all(sequence, delta=False, every=1000, compress=False)
    assert len(with_delta[0]) * 2 < len(without[0])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(states, bodies), min_size=1, max_size=20), st.booleans())
def test_encoded_frames_are_canonical_json_so_an_export_reimports_byte_for_byte(
    sequence: list[tuple[tuple[str, str, tuple[str, ...], str | None, str], dict[str, object]]],
    delta: bool,
) -> None:
    blobs, starts, _, _ = encode_all(sequence, delta=delta, every=4, compress=False)
    for blob, first in zip(blobs, starts, strict=True):
        for line in unpack_segment(blob, first):
            body = line[33:]
            assert canonical_json(json.loads(body)).encode() == body
