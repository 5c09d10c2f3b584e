"""Bad input raises a typed error and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ClusterError

from huddle import (
    CorruptSessionDataError,
    HuddleError,
    InvalidEventError,
    InvalidIdentifierError,
    NotAMemberError,
    RedisUnavailableError,
    SequenceConflictError,
    SessionManager,
    SessionNotFoundError,
    StateConflictError,
)
from huddle.core.store import boundary_error

GOOD = {"type": "modified"}

# (what, call arguments as (session, event, actor, options), expected error type)
CASES: list[tuple[str, tuple[str | None, Any, Any, dict[str, Any]], type[HuddleError]]] = [
    ("session id with braces", ("{evil}", GOOD, "a1", {}), InvalidIdentifierError),
    ("session id with space", ("a b", GOOD, "a1", {}), InvalidIdentifierError),
    ("empty session id", ("", GOOD, "a1", {}), InvalidIdentifierError),
    ("session id too long", ("s" * 129, GOOD, "a1", {}), InvalidIdentifierError),
    ("actor with braces", (None, GOOD, "a{1}", {}), InvalidIdentifierError),
    ("actor not a string", (None, GOOD, 42, {}), InvalidIdentifierError),
    ("unknown session", ("no-such-session", GOOD, "a1", {}), SessionNotFoundError),
    ("non-member actor", (None, GOOD, "stranger", {}), NotAMemberError),
    ("event without type", (None, {"data": {}}, "a1", {}), InvalidEventError),
    ("event type with spaces", (None, {"type": "bad type"}, "a1", {}), InvalidEventError),
    ("lifecycle type reserved", (None, {"type": "join"}, "a1", {}), InvalidEventError),
    ("unknown field (typo)", (None, {"type": "modified", "chage_info": {}}, "a1", {}), InvalidEventError),
    (
        "entity_ids not a list",
        (
            None,
            {"type": "m", "change_info": {"element_type": "f", "entity_ids": "x", "operation": "o"}},
            "a1",
            {},
        ),
        InvalidEventError,
    ),
    (
        "confidence above 1",
        (
            None,
            {"type": "m", "state_transition": {"from": "working", "to": "x", "confidence": 1.5}},
            "a1",
            {},
        ),
        InvalidEventError,
    ),
    (
        "transition without to",
        (None, {"type": "m", "state_transition": {"from": "working"}}, "a1", {}),
        InvalidEventError,
    ),
    (
        "bad severity",
        (None, {"type": "m", "impact": {"severity": "apocalyptic"}}, "a1", {}),
        InvalidEventError,
    ),
    (
        "payload over the size limit",
        (None, {"type": "m", "data": {"blob": "x" * 70_000}}, "a1", {}),
        InvalidEventError,
    ),
    ("event not a mapping", (None, ["modified"], "a1", {}), InvalidEventError),
    (
        "wrong from state",
        (None, {"type": "fixed", "state_transition": {"from": "broken", "to": "working"}}, "a1", {}),
        StateConflictError,
    ),
    ("stale expected_seq", (None, GOOD, "a1", {"expected_seq": 0}), SequenceConflictError),
    ("negative expected_seq", (None, GOOD, "a1", {"expected_seq": -1}), InvalidEventError),
    ("idempotency key with braces", (None, GOOD, "a1", {"idempotency_key": "{k}"}), InvalidIdentifierError),
]


@pytest.mark.parametrize(("what", "call", "error"), CASES, ids=[case[0] for case in CASES])
async def test_bad_emit_input_raises_typed_error_and_writes_nothing(
    manager: SessionManager,
    what: str,
    call: tuple[str | None, Any, Any, dict[str, Any]],
    error: type[HuddleError],
) -> None:
    sid = await manager.create_session("a1")
    session_arg, event, actor, options = call
    before = await manager.get_session(sid)
    keys_before = sorted(await manager.client.keys(f"{manager.config.namespace}:*"))
    with pytest.raises(error) as info:
        await manager.emit_event(session_arg if session_arg is not None else sid, event, actor, **options)
    assert info.value.code and info.value.message
    after = await manager.get_session(sid)
    assert (after.version, after.last_seq, after.state) == (before.version, before.last_seq, before.state)
    assert len(await manager.get_events(sid)) == 1
    assert sorted(await manager.client.keys(f"{manager.config.namespace}:*")) == keys_before


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"agent_id": "bad agent"}, InvalidIdentifierError),
        ({"agent_id": "a1", "session_id": "x}"}, InvalidIdentifierError),
        ({"agent_id": "a1", "metadata": {"f": object()}}, InvalidEventError),
        ({"agent_id": "a1", "metadata": {"blob": "x" * 70_000}}, InvalidEventError),
        ({"agent_id": "a1", "ttl": 0}, InvalidEventError),
        ({"agent_id": "a1", "initial_state": "not ok"}, InvalidIdentifierError),
    ],
)
async def test_bad_create_input_raises_and_creates_nothing(
    manager: SessionManager, kwargs: dict[str, Any], error: type[HuddleError]
) -> None:
    with pytest.raises(error):
        await manager.create_session(**kwargs)
    assert await manager.client.keys(f"{manager.config.namespace}:*") == []


async def test_bad_checkpoint_and_range_arguments_are_refused(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    with pytest.raises(InvalidEventError):
        await manager.checkpoint(sid, grace_ttl=0)
    with pytest.raises(InvalidIdentifierError):
        await manager.checkpoint(sid, reason="has space")
    with pytest.raises(InvalidEventError):
        await manager.get_events(sid, from_seq=5, to_seq=2)
    assert (await manager.get_session(sid)).last_seq == 1


async def test_corrupt_stored_data_is_a_typed_error_naming_the_key_and_field(manager: SessionManager) -> None:
    """Unreadable stored data: reads and mutations raise CorruptSessionDataError with the Redis key and the field,
    and a refused mutation writes nothing (tests/test_fuzz_sessions.py tries every field with many values)."""
    sid = await manager.create_session("a1")
    await manager.emit_event(sid, GOOD, "a1")
    keys = manager.keys.session(sid)
    await manager.client.hset(keys.meta, "ttl", "abc")
    with pytest.raises(CorruptSessionDataError) as caught:
        await manager.get_session(sid)
    assert caught.value.details["key"] == keys.meta and caught.value.details["field"] == "ttl"
    assert caught.value.code == "corrupt_session_data"
    with pytest.raises(CorruptSessionDataError, match="'ttl'"):
        await manager.join_session(sid, "a2")
    await manager.client.hset(keys.meta, mapping={"ttl": "3600", "ver": "1.5"})
    with pytest.raises(CorruptSessionDataError, match="'ver'"):
        await manager.checkpoint(sid, force_snapshot=True)
    assert await manager.client.xlen(keys.events) == 2  # nothing appended
    await manager.client.hset(keys.meta, "ver", "2")

    entries = await manager.client.xrange(keys.events)
    await manager.client.delete(keys.events)
    for entry_id, fields in entries:
        await manager.client.xadd(
            keys.events, {**fields, "ts": "soon"} if entry_id == "0-2" else fields, id=entry_id
        )
    with pytest.raises(CorruptSessionDataError) as caught:
        await manager.get_events(sid)
    assert caught.value.details == {"session_id": sid, "key": keys.events, "field": "0-2.ts"}

    await manager.client.delete(keys.agents)
    await manager.client.set(keys.agents, "not a hash")
    with pytest.raises(CorruptSessionDataError, match="wrong Redis type"):
        await manager.get_session(sid)


def test_redis_py_giving_up_during_a_slot_move_is_an_outage_not_an_untyped_error() -> None:
    """redis-py's cluster client raises ClusterError("TTL exhausted.") after its redirect/retry budget while a slot
    migrates (seen in the slot-migration fault runs): a retryable RedisUnavailableError, like TRYAGAIN."""
    converted = boundary_error(ClusterError("TTL exhausted."))
    assert isinstance(converted, RedisUnavailableError)
