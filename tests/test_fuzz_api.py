"""Fuzzing the Python API: arguments drawn from the models' own shapes plus arbitrary values must be accepted
or refused with a typed ``HuddleError``; a refused call leaves the session's keys exactly as they were."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability.fuzz import Tally

from huddle import (
    CheckpointNotFoundError,
    EmbeddedRedis,
    HuddleError,
    InvalidEventError,
    InvalidIdentifierError,
    SessionEvent,
    SessionManager,
    SessionManagerConfig,
    StateTransition,
)

EXAMPLES = 1000
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
ANY = JSON | st.binary(max_size=10) | st.just(object()) | st.sets(st.integers(), max_size=3)
IDS = st.one_of(
    st.sampled_from(["a1", "a2", "ghost", "", " ", "a" * 300, "a/b", "{x}", "é"]), st.text(max_size=80), ANY
)
NUMBERS = st.one_of(
    st.none(), st.integers(-5, 10**20), st.floats(allow_nan=True), st.booleans(), st.text(max_size=5)
)
VALID_IDS = st.sampled_from(["a1", "a2", "a3"])
FIELDS = (
    "type",
    "change_info",
    "changeInfo",
    "state_transition",
    "stateTransition",
    "impact",
    "data",
    "seq",
    "x",
)
EVENTS = st.one_of(
    st.builds(SessionEvent, type=st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True), data=st.none()),
    st.builds(
        lambda t, tr: {"type": t, "state_transition": tr},
        st.sampled_from(["modified", "broke", "start", "x" * 70]),
        st.builds(StateTransition, from_state=st.sampled_from(["working", "nope"]), to=st.just("review")).map(
            lambda tr: tr.model_dump(by_alias=True)
        )
        | JSON,
    ),
    st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=4),
    ANY,
)


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class Surface:
    """One manager, one session, and the tally; runs calls on its own loop (Hypothesis drives sync code)."""

    def __init__(self, server: EmbeddedRedis) -> None:
        self.loop = asyncio.new_event_loop()
        config = SessionManagerConfig(redis_url=server.url, namespace=f"f{uuid.uuid4().hex[:10]}")
        self.manager = self.loop.run_until_complete(SessionManager(config).connect())
        self.sid = self.loop.run_until_complete(self.manager.create_session("a1"))
        self.loop.run_until_complete(self.manager.join_session(self.sid, "a2"))
        keys = self.manager.keys.session(self.sid)
        self.keys = [keys.meta, keys.events, keys.agents, keys.checkpoints, keys.idem]
        self.tally = Tally("Python API arguments")
        self.partial: list[str] = []

    async def _state(self) -> list[Any]:
        client = self.manager.client
        return [await client.hgetall(self.keys[0]), await client.xlen(self.keys[1]),
                await client.hgetall(self.keys[2]), await client.xlen(self.keys[3])]  # fmt: skip

    def call(self, label: str, make: Callable[[], Awaitable[Any]]) -> None:
        async def run() -> None:
            before = await self._state()
            result = await self.tally.attempt(label, make)
            if isinstance(result, BaseException) and await self._state() != before:
                self.partial.append(f"{label}: {type(result).__name__}")

        self.loop.run_until_complete(run())

    def close(self) -> None:
        self.loop.run_until_complete(self.manager.close())
        self.loop.close()


def test_fuzzed_api_arguments_get_typed_errors_and_refusals_write_nothing(
    redis_server: EmbeddedRedis,
) -> None:
    surface = Surface(redis_server)
    m = surface.manager

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(
        op=st.sampled_from(
            [
                "emit",
                "batch",
                "create",
                "join",
                "leave",
                "checkpoint",
                "events",
                "get_cp",
                "complete",
                "subscribe",
                "get_cps",
                "snapshot",
                "snapshots",
                "active",
                "by_agent",
                "get",
            ]
        ),
        good=st.integers(0, 9),
        bad_sid=IDS,
        bad_actor=IDS,
        actor=VALID_IDS,
        event=EVENTS,
        events=st.one_of(st.lists(EVENTS, max_size=4), ANY),
        number=st.one_of(st.integers(0, 50), NUMBERS),
        other=st.one_of(st.none(), st.sampled_from(["manual", "review"]), st.integers(0, 60), NUMBERS),
        key=st.one_of(st.none(), st.none(), st.sampled_from(["k1", "k2", "cp-1", "cp-3"]), IDS),
        metadata=st.one_of(st.none(), JSON, ANY),
    )
    def fuzz(
        op: str,
        good: int,
        bad_sid: Any,
        bad_actor: Any,
        actor: Any,
        event: Any,
        events: Any,
        number: Any,
        other: Any,
        key: Any,
        metadata: Any,
    ) -> None:
        # 7 in 10 calls use the real session and a plausible actor, so calls get past the id checks
        sid = bad_sid if good == 0 else surface.sid
        actor = bad_actor if good in (1, 2) else actor
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "emit": lambda: m.emit_event(sid, event, actor, expected_seq=number, idempotency_key=key),
            "batch": lambda: m.emit_events(sid, events, actor, expected_seq=number, idempotency_key=key),
            "create": lambda: m.create_session(actor, session_id=key, metadata=metadata, ttl=number, initial_state=other),
            "join": lambda: m.join_session(sid, actor),
            "leave": lambda: m.leave_session(sid, actor if actor != "a1" else "a9"),
            # a valid grace_ttl would shorten the fuzzed session's life: only invalid ones are tried
            "checkpoint": lambda: m.checkpoint(sid, actor=actor, reason=other, grace_ttl=None if _positive(number) else number),
            "events": lambda: m.get_events(sid, number, other),
            "get_cp": lambda: m.get_checkpoint(sid, key),
            # never a member, so the session stays open (a completed one would refuse every later emit)
            "complete": lambda: m.complete_session(sid, "a9" if bad_actor in ("a1", "a2", "a3") else bad_actor),
            "subscribe": lambda: _subscribe_first(m, sid, number),
            "get_cps": lambda: m.get_checkpoints(sid, other),
            "snapshot": lambda: m.get_failure_snapshot(sid, key),
            "snapshots": lambda: m.list_failure_snapshots(number),
            "active": lambda: m.list_active_sessions(other),
            "by_agent": lambda: m.get_sessions_by_agent(actor),
            "get": lambda: m.get_session(sid),
        }  # fmt: skip
        surface.call(f"{op}({sid!r:.30}, {actor!r:.20}, n={number!r:.20}, o={other!r:.20})", calls[op])

    try:
        fuzz()
    finally:
        surface.close()
    print(surface.tally.summary())
    print(surface.tally.samples)
    assert surface.tally.untyped == [], "\n".join(sorted(set(surface.tally.untyped))[:30])
    assert surface.partial == [], surface.partial[:10]
    assert surface.tally.outcomes["accepted"] > 20 and surface.tally.inputs >= EXAMPLES


async def _subscribe_first(manager: SessionManager, sid: Any, from_seq: Any) -> None:
    """The first event from ``from_seq`` on; none within 50 ms (a seq not written yet) is fine too."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.05):
            async for _ in manager.subscribe(sid, from_seq):
                return


async def test_core_argument_checks_are_typed(manager: SessionManager) -> None:
    """Arguments of the wrong type or range, for every public SessionManager method, get a typed error before
    Redis is touched (once found by the fuzzer above as TypeError, AttributeError, DataError, ResponseError)."""
    sid = await manager.create_session("a1")
    m = manager
    cases: dict[str, tuple[type[HuddleError], Callable[[], Awaitable[Any]]]] = {
        "emit list sid": (InvalidIdentifierError, lambda: m.emit_event([sid], {"type": "x"}, "a1")),  # type: ignore[arg-type]
        "emit dict actor": (InvalidIdentifierError, lambda: m.emit_event(sid, {"type": "x"}, {"a": 1})),  # type: ignore[arg-type]
        "get_events str": (InvalidEventError, lambda: m.get_events(sid, "1")),  # type: ignore[arg-type]
        "get_events None": (InvalidEventError, lambda: m.get_events(sid, None)),  # type: ignore[arg-type]
        "get_events bools": (InvalidEventError, lambda: m.get_events(sid, True, True)),
        "get_events float limit": (InvalidEventError, lambda: m.get_events(sid, 1, None, 2.0)),  # type: ignore[arg-type]
        "get_events huge": (InvalidEventError, lambda: m.get_events(sid, 2**64)),
        "get_events to < from": (InvalidEventError, lambda: m.get_events(sid, 5, 2)),
        "subscribe str": (InvalidEventError, lambda: _subscribe_first(m, sid, "1")),
        "subscribe set sid": (InvalidIdentifierError, lambda: _subscribe_first(m, {sid}, 1)),
        "get_checkpoint None": (InvalidIdentifierError, lambda: m.get_checkpoint(sid, None)),  # type: ignore[arg-type]
        "get_checkpoint bytes": (InvalidIdentifierError, lambda: m.get_checkpoint(sid, b"cp-1")),  # type: ignore[arg-type]
        "get_checkpoint unicode digit": (CheckpointNotFoundError, lambda: m.get_checkpoint(sid, "cp-\u00b2")),
        "get_checkpoints limit 0": (InvalidEventError, lambda: m.get_checkpoints(sid, 0)),
        "checkpoint grace bool": (InvalidEventError, lambda: m.checkpoint(sid, grace_ttl=True)),
        "checkpoint grace huge": (InvalidEventError, lambda: m.checkpoint(sid, grace_ttl=10**20)),
        "checkpoint reason list": (InvalidIdentifierError, lambda: m.checkpoint(sid, reason=["x"])),  # type: ignore[arg-type]
        "create ttl bool": (InvalidEventError, lambda: m.create_session("a1", ttl=True)),
        "create ttl str": (InvalidEventError, lambda: m.create_session("a1", ttl="60")),  # type: ignore[arg-type]
        "create sid list": (InvalidIdentifierError, lambda: m.create_session("a1", session_id=["s"])),  # type: ignore[arg-type]
        "failure snapshot not an id": (InvalidIdentifierError, lambda: m.get_failure_snapshot(sid, "nope")),
        "failure snapshot huge": (InvalidIdentifierError, lambda: m.get_failure_snapshot(sid, f"{2**64}-0")),
        "failure snapshot None": (InvalidIdentifierError, lambda: m.get_failure_snapshot(sid, None)),  # type: ignore[arg-type]
        "failure snapshots limit str": (InvalidEventError, lambda: m.list_failure_snapshots("5")),  # type: ignore[arg-type]
        "active sessions limit 0": (InvalidEventError, lambda: m.list_active_sessions(0)),
        "sessions by agent int": (InvalidIdentifierError, lambda: m.get_sessions_by_agent(7)),  # type: ignore[arg-type]
        "join tuple agent": (InvalidIdentifierError, lambda: m.join_session(sid, ("a",))),  # type: ignore[arg-type]
        "leave None agent": (InvalidIdentifierError, lambda: m.leave_session(sid, None)),  # type: ignore[arg-type]
        "complete int actor": (InvalidIdentifierError, lambda: m.complete_session(sid, 1)),  # type: ignore[arg-type]
        "get_session bytes": (InvalidIdentifierError, lambda: m.get_session(b"s")),  # type: ignore[arg-type]
    }  # fmt: skip
    keys = manager.keys.session(sid)
    before = [await manager.client.hgetall(keys.meta), await manager.client.xlen(keys.events)]
    tally = Tally("core argument checks")
    for label, (expected, call) in cases.items():
        result = await tally.attempt(label, call)
        assert isinstance(result, expected), f"{label}: {result!r}"
    assert tally.untyped == []
    with pytest.raises(InvalidEventError):
        m.add_operation_observer(3)  # type: ignore[arg-type]
    assert [await manager.client.hgetall(keys.meta), await manager.client.xlen(keys.events)] == before
    assert await manager.get_failure_snapshot(sid, "1-0") is None  # a well-formed id that does not exist
