"""Fuzzing replays: mutated JSON Lines imports and corrupted recordings in Redis each end in a typed
``HuddleError`` or a verification report naming the problem; a refused import writes nothing."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from reliability.fuzz import Tally, garbage_values, mutate_text

from huddle import ReplayConfig, SessionManager, SessionReplay, VerifyReport
from huddle.backend.connection import create_client

JSONL_INPUTS = 600


@pytest.fixture
async def recorded(manager: SessionManager) -> AsyncIterator[tuple[SessionReplay, str]]:
    replay = SessionReplay(manager, ReplayConfig(snapshot_every_frames=8))
    sid = await manager.create_session("a1", record=True)
    await manager.join_session(sid, "a2")
    for n in range(30):
        move = {"from": "working", "to": "review"} if n == 10 else None
        event = {"type": "modified", "data": {"n": n}, **({"state_transition": move} if move else {})}
        await manager.emit_event(sid, event, "a1" if n % 2 else "a2")
    replay_id = await replay.stop_recording(sid)
    yield replay, replay_id
    await replay.close()


async def _replay_keys(manager: SessionManager) -> set[str]:
    """Every key of the test's namespace (replay keys included)."""
    return {key async for key in manager.client.scan_iter(match=f"{manager.config.namespace}*")}


async def test_mutated_jsonl_imports_are_refused_with_typed_errors_and_write_nothing(
    manager: SessionManager, recorded: tuple[SessionReplay, str]
) -> None:
    replay, replay_id = recorded
    lines = [line async for line in replay.export_replay(replay_id)]
    rng = random.Random(16)
    tally = Tally("replay JSONL import")
    before = await _replay_keys(manager)
    verified_bad = 0
    for n in range(JSONL_INPUTS):
        mutated = list(lines)
        kind = n % 5
        if kind == 0:  # truncated file
            mutated = mutated[: rng.randrange(len(mutated))]
        elif kind == 1:  # two lines swapped
            i, j = rng.sample(range(len(mutated)), 2)
            mutated[i], mutated[j] = mutated[j], mutated[i]
        elif kind == 2:  # a line dropped or doubled
            i = rng.randrange(len(mutated))
            mutated[i:i] = [] if rng.random() < 0.5 else [mutated[i]]
            if rng.random() < 0.5:
                del mutated[i]
        else:  # bit flips / cuts inside one or two lines
            for _ in range(kind - 2):
                i = rng.randrange(len(mutated))
                mutated[i] = mutate_text(mutated[i], rng)
        target = f"fz-{n}"
        result = await tally.attempt(
            f"mutation {n} kind {kind}", lambda m=mutated, t=target: replay.import_replay(m, replay_id=t)
        )
        if isinstance(result, str):
            # accepted: the change did not touch anything hashed (or undid itself); verify must agree
            report = await replay.verify_replay(result)
            verified_bad += 0 if report.ok else 1
            await replay.delete_replay(result)
        else:
            assert await replay.get_replay(target) is None, f"refused import {n} left a recording behind"
    print(tally.summary(), f"accepted-but-failing-verify={verified_bad}")
    assert tally.untyped == []
    assert verified_bad == 0, "an import was accepted that verify then rejects"
    assert tally.outcomes["accepted"] < JSONL_INPUTS // 4, "the mutations hardly changed anything"
    assert await _replay_keys(manager) == before


def _corruptions(rng: random.Random) -> list[tuple[str, str, object]]:
    """(part, field or position, garbage) for every meta field, index entry and block of a recording."""
    plans: list[tuple[str, str, object]] = []
    fields = ("sid", "status", "reason", "started", "ended", "init", "md", "comp", "delta", "raw", "frames",
              "segments", "first_seq", "last_seq", "first_at", "last_at", "head", "stored")  # fmt: skip
    for name in fields:
        plans += [("meta", name, value) for value in garbage_values(rng)]
        plans.append(("meta-del", name, None))
    for position in range(3):
        plans += [("segidx", str(position), value) for value in garbage_values(rng)]
        plans += [("segments", str(position), value) for value in garbage_values(rng)]
        plans.append(("segments", str(position), bytes([1]) + rng.randbytes(40)))
    plans += [(part, "wrong-type", None) for part in ("meta", "segidx", "segments")]
    return plans


async def _corrupt(raw: aioredis.Redis, key: str, part: str, where: str, value: object) -> None:
    if where == "wrong-type":
        await raw.delete(key)
        await raw.set(key, "a string where a hash or list belongs")
    elif part == "meta":
        await raw.hset(key, where, value)  # type: ignore[arg-type]
    elif part == "meta-del":
        await raw.hdel(key, where)
    else:
        await raw.lset(key, int(where), value)  # type: ignore[arg-type]


async def test_corrupted_recordings_in_redis_give_typed_errors_or_a_failed_verify(
    manager: SessionManager, recorded: tuple[SessionReplay, str]
) -> None:
    replay, replay_id = recorded
    raw = create_client(manager.config, decode_responses=False)
    rng = random.Random(17)
    tally = Tally("corrupted recording in Redis")
    verify_failed = verify_missed = 0
    try:
        keys = {part: manager.keys.replay(replay_id, part) for part in ("meta", "segidx", "segments")}
        dumps = {part: await raw.dump(key) for part, key in keys.items()}
        for part, where, value in _corruptions(rng):
            key = keys["meta" if part == "meta-del" else part]
            await _corrupt(raw, key, part, where, value)
            label = f"{part}[{where}]={value!r}"[:80]
            report = await tally.attempt(f"verify {label}", lambda: replay.verify_replay(replay_id))
            if isinstance(report, VerifyReport):
                verify_failed += 0 if report.ok else 1
                if report.ok and part in ("segidx", "segments"):
                    verify_missed += 1
                    print("verify missed", label)
            await tally.attempt(f"info {label}", lambda: replay.get_replay(replay_id))
            await tally.attempt(f"list {label}", lambda: replay.list_replays())
            await tally.attempt(f"export {label}", lambda: _drain(replay, replay_id))
            await tally.attempt(f"play {label}", lambda: _play(replay, replay_id))
            for part_name, key_name in keys.items():  # restore the untouched recording
                await raw.restore(key_name, 0, dumps[part_name], replace=True)
        assert (await replay.verify_replay(replay_id)).ok
    finally:
        await raw.aclose()
    print(tally.summary(), f"verify-reported={verify_failed} verify-missed-block-damage={verify_missed}")
    assert tally.untyped == [], "\n".join(tally.untyped[:20])
    assert verify_missed == 0


async def _drain(replay: SessionReplay, replay_id: str) -> int:
    return len([line async for line in replay.export_replay(replay_id)])


async def _play(replay: SessionReplay, replay_id: str) -> int:
    session = await replay.start_replay(replay_id)
    return len(await replay.frames(session))


async def test_verify_names_a_corrupt_frames_count(
    manager: SessionManager, recorded: tuple[SessionReplay, str]
) -> None:
    replay, replay_id = recorded
    await manager.client.hset(manager.keys.replay(replay_id, "meta"), "frames", "many")
    report = await replay.verify_replay(replay_id)
    assert not report.ok and report.reason is not None and "frames" in report.reason
