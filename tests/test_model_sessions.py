"""Model-based test: a Hypothesis state machine drives two managers on one real Redis (create, join, leave,
emit with expected_seq / idempotency keys / transitions, batch emit, checkpoint, complete, trimming) and
compares every step with a small pure-Python model of what huddle promises."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from huddle import (
    EmbeddedRedis,
    HuddleError,
    InvalidEventError,
    NotAMemberError,
    SequenceConflictError,
    SessionCompletedError,
    SessionManager,
    SessionManagerConfig,
    StateConflictError,
)

T = TypeVar("T")
AGENTS = ("ann", "bob", "cy")
INTERVAL = 3
MAX_EVENTS = 10
WRITERS = st.sampled_from(("ann", "ann", "ann", "bob", "cy"))
MOSTLY_NONE = st.sampled_from(["none", "none", "none", "right", "wrong"])


@dataclass
class ModelSession:
    """What the model expects of one session."""

    sid: str
    members: set[str]
    state: str = "working"
    status: str = "active"
    seq: int = 1
    first: int = 1
    ncp: int = 0
    last_cp: int | None = None
    log: dict[int, tuple[str, str, str | None]] = field(default_factory=dict)
    """seq -> (type, actor, idempotency key or None) for every event the model knows of."""
    keys: dict[str, tuple[int, int]] = field(default_factory=dict)
    """idempotency key -> (first seq, count) while the key's first event is still in the log."""


def _event(key: str | None, transition: tuple[str, str] | None, index: int = 0) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "modified", "data": {"k": key, "i": index}}
    if transition is not None:
        event["state_transition"] = {"from": transition[0], "to": transition[1]}
    return event


class SessionMachine(RuleBasedStateMachine):
    """Two managers, up to three sessions, checked against ``ModelSession`` after every step."""

    server: EmbeddedRedis
    seen: Counter[str] = Counter()
    """Outcomes over all examples, so the test can show it reached trimming, replays and refusals."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        config = SessionManagerConfig(
            redis_url=self.server.url,
            namespace=f"m{uuid.uuid4().hex[:10]}",
            checkpoint_interval=INTERVAL,
            max_events_per_session=MAX_EVENTS,
        )
        self.managers = [self.run(SessionManager(config).connect()) for _ in range(2)]
        self.sessions: list[ModelSession] = []
        self.counter = 0

    def run(self, call: Awaitable[T]) -> T:
        return self.loop.run_until_complete(call)  # type: ignore[arg-type]

    def teardown(self) -> None:
        for manager in self.managers:
            self.run(manager.close())
        self.loop.close()

    def new_key(self) -> str:
        self.counter += 1
        return f"key-{self.counter}"

    # -- applying expected writes to the model --------------------------------------------------------------
    def expect_writes(self, model: ModelSession, entries: list[tuple[str, str, str | None]]) -> list[int]:
        """Append entries to the model's log; returns their seqs."""
        seqs = []
        for entry in entries:
            model.seq += 1
            model.log[model.seq] = entry
            seqs.append(model.seq)
        return seqs

    def after_emit(self, model: ModelSession, actor: str, count: int, auto: bool) -> None:
        """Auto-checkpoint as promised (every INTERVAL events), plus any trim checkpoint huddle added."""
        model.ncp += count
        if auto and model.ncp >= INTERVAL:
            self.seen["auto checkpoint"] += 1
            self.expect_writes(model, [("checkpoint", actor, None)])
            model.ncp, model.last_cp = 0, model.seq
        self.sync_extra_checkpoint(model, actor)

    def sync_extra_checkpoint(self, model: ModelSession, actor: str) -> None:
        """Trimming may add one 'checkpoint' so the trimmed events stay covered: accept it, nothing else."""
        document = self.run(self.managers[1].get_session(model.sid))
        if document.last_seq == model.seq + 1:
            assert document.first_seq > model.first, f"an unexplained extra event (ncp {model.ncp})"
            extra = self.run(self.managers[1].get_events(model.sid, model.seq + 1))
            assert [(e.type, e.actor) for e in extra] == [("checkpoint", actor)]
            self.expect_writes(model, [("checkpoint", actor, None)])
            model.ncp, model.last_cp = 0, model.seq
        if document.first_seq > model.first:
            self.seen["trimmed"] += 1
        model.first = document.first_seq
        model.keys = {k: v for k, v in model.keys.items() if v[0] >= model.first}

    # -- rules ----------------------------------------------------------------------------------------------
    @precondition(lambda self: len(self.sessions) < 3)
    @rule(m=st.integers(0, 1), agent=st.sampled_from(AGENTS))
    def create(self, m: int, agent: str) -> None:
        sid = self.run(self.managers[m].create_session(agent))
        model = ModelSession(sid, {agent})
        model.log[1] = ("start", agent, None)
        self.sessions.append(model)

    def pick(self, index: int) -> ModelSession:
        return self.sessions[index % len(self.sessions)]

    @precondition(lambda self: self.sessions)
    @rule(m=st.integers(0, 1), s=st.integers(0, 2), agent=st.sampled_from(AGENTS))
    def join(self, m: int, s: int, agent: str) -> None:
        model = self.pick(s)
        joined = self.run(self.managers[m].join_session(model.sid, agent))
        assert joined == (agent not in model.members)
        if joined:
            model.members.add(agent)
            model.status = "active"  # observed contract: a join reopens a completed session
            self.expect_writes(model, [("join", agent, None)])

    @precondition(lambda self: self.sessions)
    @rule(m=st.integers(0, 1), s=st.integers(0, 2), agent=st.sampled_from(AGENTS))
    def leave(self, m: int, s: int, agent: str) -> None:
        model = self.pick(s)
        left = self.run(self.managers[m].leave_session(model.sid, agent))
        assert left == (agent in model.members)
        if left:
            model.members.discard(agent)
            self.expect_writes(model, [("leave", agent, None)])

    def expected_error(
        self, model: ModelSession, agent: str, expect: str, chain_ok: bool
    ) -> type[HuddleError] | None:
        if model.status == "completed":
            return SessionCompletedError
        if agent not in model.members:
            return NotAMemberError
        if expect == "wrong":
            return SequenceConflictError
        if not chain_ok:
            return StateConflictError
        return None

    def key_for(self, model: ModelSession, key_mode: str) -> str | None:
        if key_mode == "reuse" and model.keys:
            return max(model.keys, key=lambda k: model.keys[k][0])  # the newest: least likely trimmed
        return self.new_key() if key_mode != "none" else None

    @precondition(lambda self: self.sessions)
    @rule(
        m=st.integers(0, 1),
        s=st.integers(0, 2),
        agent=WRITERS,
        expect=MOSTLY_NONE,
        key_mode=st.sampled_from(["none", "new", "reuse"]),
        transition=MOSTLY_NONE,
        goal=st.sampled_from(["working", "review", "broken", "done"]),
        auto=st.booleans(),
    )
    def emit(
        self, m: int, s: int, agent: str, expect: str, key_mode: str, transition: str, goal: str, auto: bool
    ) -> None:
        model = self.pick(s)
        key = self.key_for(model, key_mode)
        move = None if transition == "none" else (model.state if transition == "right" else "elsewhere", goal)
        expected_seq = {"none": None, "right": model.seq, "wrong": model.seq + 1}[expect]
        call = self.managers[m].emit_event(
            model.sid,
            _event(key, move),
            agent,
            expected_seq=expected_seq,
            idempotency_key=key,
            auto_checkpoint=auto,
        )
        if key is not None and key in model.keys:
            assert self.run(call) == model.keys[key][0]  # the first call's seq, nothing written
            self.seen["replayed"] += 1
            return
        error = self.expected_error(model, agent, expect, transition != "wrong")
        if error is not None:
            with pytest.raises(error):
                self.run(call)
            self.seen[error.__name__] += 1
            return
        seq = self.run(call)
        assert [seq] == self.expect_writes(model, [("modified", agent, key)])
        if move is not None:
            model.state = goal
        if key is not None:
            model.keys[key] = (seq, 1)
        self.after_emit(model, agent, 1, auto)

    @precondition(lambda self: self.sessions)
    @rule(
        m=st.integers(0, 1),
        s=st.integers(0, 2),
        agent=WRITERS,
        expect=MOSTLY_NONE,
        key_mode=st.sampled_from(["none", "new", "reuse"]),
        moves=st.lists(
            st.sampled_from(["none", "right", "working", "review", "done"]), min_size=1, max_size=4
        ),
        auto=st.booleans(),
    )
    def emit_batch(
        self, m: int, s: int, agent: str, expect: str, key_mode: str, moves: list[str], auto: bool
    ) -> None:
        model = self.pick(s)
        key = self.key_for(model, key_mode)
        state, chain_ok, events = model.state, True, []
        for index, move in enumerate(moves):
            if move == "none":
                events.append(_event(key, None, index))
                continue
            # 'right' moves on from the state reached so far; a named state claims to move from that name
            source = state if move == "right" else move
            chain_ok = chain_ok and source == state
            state = f"s{index}"
            events.append(_event(key, (source, state), index))
        expected_seq = {"none": None, "right": model.seq, "wrong": model.seq + 1}[expect]
        call = self.managers[m].emit_events(
            model.sid, events, agent, expected_seq=expected_seq, idempotency_key=key, auto_checkpoint=auto
        )
        if key is not None and key in model.keys:
            first, count = model.keys[key]
            if count != len(events):  # the key names another call: refused, not silently answered
                with pytest.raises(InvalidEventError):
                    self.run(call)
                self.seen["batch key of another size"] += 1
                return
            assert self.run(call) == list(range(first, first + count))
            self.seen["batch replayed"] += 1
            return
        error = self.expected_error(model, agent, expect, chain_ok)
        if error is not None:
            with pytest.raises(error):
                self.run(call)
            self.seen[f"batch {error.__name__}"] += 1
            return
        seqs = self.run(call)
        assert seqs == self.expect_writes(model, [("modified", agent, key)] * len(events))
        model.state = state
        if key is not None:
            model.keys[key] = (seqs[0], len(seqs))
        self.after_emit(model, agent, len(events), auto)

    @precondition(lambda self: self.sessions)
    @rule(m=st.integers(0, 1), s=st.integers(0, 2), force=st.booleans())
    def checkpoint(self, m: int, s: int, force: bool) -> None:
        model = self.pick(s)
        cp_id = self.run(self.managers[m].checkpoint(model.sid, force_snapshot=force))
        if not force and model.last_cp == model.seq:
            assert cp_id == f"cp-{model.seq}"
            return
        self.expect_writes(model, [("checkpoint", "huddle", None)])
        model.ncp, model.last_cp = 0, model.seq
        assert cp_id == f"cp-{model.seq}"
        stored = self.run(self.managers[1 - m].get_checkpoint(model.sid, cp_id))
        assert (stored.state, set(stored.agents), stored.status) == (model.state, model.members, model.status)

    @precondition(lambda self: self.sessions)
    @rule(m=st.integers(0, 1), s=st.integers(0, 2), agent=st.sampled_from(AGENTS))
    def complete(self, m: int, s: int, agent: str) -> None:
        model = self.pick(s)
        call = self.managers[m].complete_session(model.sid, agent)
        if model.status == "completed":
            assert self.run(call) == model.seq
            return
        if agent not in model.members:
            with pytest.raises(NotAMemberError):
                self.run(call)
            return
        assert [self.run(call)] == self.expect_writes(model, [("complete", agent, None)])
        model.status = "completed"

    # -- the comparison after every step ----------------------------------------------------------------------
    @invariant()
    def redis_matches_the_model(self) -> None:
        reader = self.managers[1]
        for model in self.sessions:
            document = self.run(reader.get_session(model.sid))
            assert document.last_seq == model.seq
            assert (document.state, document.status) == (model.state, model.status)
            assert set(document.agents) == model.members
            assert document.first_seq == model.first
            assert model.seq - model.first + 1 >= min(MAX_EVENTS, model.seq), "trimmed below the kept window"
            events = self.run(reader.get_events(model.sid))
            assert [e.seq for e in events] == list(range(model.first, model.seq + 1)), "gap in the log"
            for event in events:
                key = (event.data or {}).get("k")
                assert (event.type, event.actor, key) == model.log[event.seq], f"seq {event.seq}"


def test_two_managers_agree_with_the_reference_model(redis_server: EmbeddedRedis) -> None:
    SessionMachine.server = redis_server
    SessionMachine.seen.clear()
    run_state_machine_as_test(
        SessionMachine,
        settings=settings(
            max_examples=100,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            derandomize=True,
        ),
    )
    print(dict(SessionMachine.seen))
    for outcome in (
        "trimmed",
        "replayed",
        "batch replayed",
        "auto checkpoint",
        "SequenceConflictError",
        "StateConflictError",
        "NotAMemberError",
        "SessionCompletedError",
        "batch StateConflictError",
    ):
        assert SessionMachine.seen[outcome] > 0, f"the examples never reached {outcome!r}"
