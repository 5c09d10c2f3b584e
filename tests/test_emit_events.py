"""emit_events: a batch is appended atomically (contiguous seqs, all or nothing), idempotently, gaplessly."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from huddle import (
    InvalidEventError,
    NotAMemberError,
    SequenceConflictError,
    SessionCompletedError,
    SessionManager,
    SessionManagerConfig,
    SessionNotFoundError,
    StateConflictError,
)
from huddle.core.event_input import MAX_BATCH_EVENTS

MakeManager = Callable[..., Awaitable[SessionManager]]


def modified(i: int) -> dict[str, Any]:
    return {"type": "modified", "data": {"i": i}}


def transition(src: str, dst: str) -> dict[str, Any]:
    return {"type": "state_change", "state_transition": {"from": src, "to": dst}}


async def footprint(manager: SessionManager, sid: str) -> tuple[Any, ...]:
    """Everything a refused batch must leave untouched."""
    keys = manager.keys.session(sid)
    doc = await manager.get_session(sid)
    client = manager.client
    return (
        doc.last_seq,
        doc.version,
        doc.state,
        await client.xlen(keys.events),
        await client.hlen(keys.idem),
        await client.xlen(keys.checkpoints),
        await client.exists(keys.failures),
    )


async def test_a_batch_gets_contiguous_seqs_in_order(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    seqs = await manager.emit_events(sid, [modified(i) for i in range(5)], "a1")
    assert seqs == [2, 3, 4, 5, 6]
    events = await manager.get_events(sid, 2)
    assert [(e.seq, e.type, e.actor, (e.data or {})["i"]) for e in events] == [
        (seq, "modified", "a1", i) for i, seq in enumerate(seqs)
    ]
    doc = await manager.get_session(sid)
    assert doc.last_seq == 6 and doc.version == 2  # one mutation


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "bad type!"},
        {"type": "modified", "state_transition": {"from": "working"}},
        {"type": "start"},
        {"type": "modified", "data": {"blob": "x" * 70_000}},
        transition("broken", "working"),  # 'from' is not the state the batch reached: refused by the script
    ],
    ids=["bad-type", "bad-transition", "lifecycle-type", "too-large", "state-conflict"],
)
async def test_a_bad_event_anywhere_in_the_batch_writes_nothing(
    manager: SessionManager, bad: dict[str, Any]
) -> None:
    sid = await manager.create_session("a1")
    await manager.emit_event(sid, modified(0), "a1")
    before = await footprint(manager, sid)
    batch = [modified(1), transition("working", "review"), bad, modified(2)]
    with pytest.raises((InvalidEventError, StateConflictError)):
        await manager.emit_events(sid, batch, "a1")
    assert await footprint(manager, sid) == before


async def test_refusals_are_typed_and_write_nothing(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    before = await footprint(manager, sid)
    with pytest.raises(NotAMemberError):
        await manager.emit_events(sid, [modified(1)], "stranger")
    with pytest.raises(SequenceConflictError) as conflict:
        await manager.emit_events(sid, [modified(1), modified(2)], "a1", expected_seq=5)
    assert conflict.value.details["current_seq"] == 1
    with pytest.raises(InvalidEventError):
        await manager.emit_events(sid, [], "a1")
    with pytest.raises(InvalidEventError):
        await manager.emit_events(sid, [modified(i) for i in range(MAX_BATCH_EVENTS + 1)], "a1")
    with pytest.raises(InvalidEventError):
        await manager.emit_events(sid, modified(1), "a1")  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError):
        await manager.emit_events(sid, [modified(1)], "a1", expected_seq=-1)
    assert await footprint(manager, sid) == before
    with pytest.raises(SessionNotFoundError):
        await manager.emit_events("nope", [modified(1)], "a1")
    await manager.complete_session(sid, "a1")
    with pytest.raises(SessionCompletedError):
        await manager.emit_events(sid, [modified(1)], "a1")


async def test_expected_seq_is_the_last_seq_before_the_batch(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    assert await manager.emit_events(sid, [modified(1), modified(2)], "a1", expected_seq=1) == [2, 3]
    with pytest.raises(SequenceConflictError):
        await manager.emit_events(sid, [modified(3)], "a1", expected_seq=1)
    assert await manager.emit_events(sid, [modified(3)], "a1", expected_seq=3) == [4]


async def test_a_retried_batch_with_its_idempotency_key_returns_the_same_seqs_and_writes_nothing(
    manager: SessionManager,
) -> None:
    sid = await manager.create_session("a1")
    batch = [modified(i) for i in range(3)]
    first = await manager.emit_events(sid, batch, "a1", idempotency_key="batch-1")
    await manager.emit_event(sid, modified(9), "a1")
    before = await footprint(manager, sid)
    assert await manager.emit_events(sid, batch, "a1", idempotency_key="batch-1") == first == [2, 3, 4]
    assert await footprint(manager, sid) == before
    # the same key on a batch of another length is a caller bug, not a silent partial answer
    with pytest.raises(InvalidEventError):
        await manager.emit_events(sid, batch[:2], "a1", idempotency_key="batch-1")
    # a key first used by emit_event answers a one-event batch with that event's seq
    seq = await manager.emit_event(sid, modified(10), "a1", idempotency_key="single-1")
    assert await manager.emit_events(sid, [modified(10)], "a1", idempotency_key="single-1") == [seq]
    assert await manager.emit_event(sid, modified(0), "a1", idempotency_key="batch-1") == 2


async def test_a_transition_chain_inside_one_batch_moves_the_state_step_by_step(
    make_manager: MakeManager,
) -> None:
    manager = await make_manager(checkpoint_interval=1000)
    sid = await manager.create_session("a1")
    batch = [
        transition("working", "review"),
        modified(1),
        transition("review", "broken"),
        {"type": "broke", "data": {"why": "tests"}},
        transition("broken", "working"),
    ]
    seqs = await manager.emit_events(sid, batch, "a1")
    assert seqs == [2, 3, 4, 5, 6]
    doc = await manager.get_session(sid)
    assert doc.state == "working" and doc.broken_since is None
    snapshots = await manager.store.get_failure_snapshots(sid)
    # entering 'broken' (seq 4) and the 'broke' event (seq 5) each took a snapshot of the log up to there
    assert sorted(s.seq for s in snapshots) == [4, 5]
    assert [s.state for s in sorted(snapshots, key=lambda s: s.seq)] == ["broken", "broken"]
    assert [e.seq for e in sorted(snapshots, key=lambda s: s.seq)[0].events][-1] == 4
    refs = await manager.list_failure_snapshots()
    assert {ref.snapshot_id for ref in refs if ref.session_id == sid} == {s.snapshot_id for s in snapshots}


async def test_a_batch_crossing_the_checkpoint_interval_and_the_trim_limit(make_manager: MakeManager) -> None:
    manager = await make_manager(checkpoint_interval=10, max_events_per_session=20)
    sid = await manager.create_session("a1")
    seqs = await manager.emit_events(sid, [modified(i) for i in range(8)], "a1")
    assert seqs == list(range(2, 10))
    seqs = await manager.emit_events(sid, [modified(i) for i in range(5)], "a1")
    assert seqs == list(range(10, 15))  # contiguous; the checkpoint comes right after the batch
    events = await manager.get_events(sid)
    assert [(e.seq, e.type) for e in events[-2:]] == [(14, "modified"), (15, "checkpoint")]
    doc = await manager.get_session(sid)
    assert doc.last_checkpoint_id == "cp-15" and doc.last_seq == 15

    seqs = await manager.emit_events(sid, [modified(i) for i in range(30)], "a1", idempotency_key="big")
    assert seqs == list(range(16, 46))
    doc = await manager.get_session(sid)
    events = await manager.get_events(sid)
    assert len(events) <= 20 and events[-1].seq == doc.last_seq
    assert [e.seq for e in events] == list(range(doc.first_seq, doc.last_seq + 1))
    assert doc.last_checkpoint_seq >= doc.first_seq  # a checkpoint holds the state of the trimmed part
    # the key rides on the batch's last event: still in the log, so a retry is still recognised
    again = await manager.emit_events(sid, [modified(i) for i in range(30)], "a1", idempotency_key="big")
    assert again == list(range(16, 46))
    keys = manager.keys.session(sid)
    await manager.emit_events(sid, [modified(i) for i in range(25)], "a1")  # pushes the whole batch out
    assert not await manager.client.hexists(keys.idem, "big")  # dropped with its event


def _batch_writer(url: str, namespace: str, session_id: str, agent: str, batches: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    async def run() -> list[int]:
        config = SessionManagerConfig(redis_url=url, namespace=namespace, max_events_per_session=5000)
        async with SessionManager(config) as manager:
            await manager.join_session(session_id, agent)

            async def one(b: int) -> list[int]:
                events = [
                    {"type": "modified", "data": {"agent": agent, "b": b, "i": i}} for i in range(b % 7 + 1)
                ]
                return await manager.emit_events(session_id, events, agent)

            done = await asyncio.gather(*(one(b) for b in range(batches)))
            return [seq for seqs in done for seq in seqs]

    out.put((agent, asyncio.run(run())))


async def test_concurrent_batches_from_several_processes_stay_gapless(make_manager: MakeManager) -> None:
    manager = await make_manager(max_events_per_session=5000)
    config = manager.config
    sid = await manager.create_session("owner")
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    workers = [
        ctx.Process(
            target=_batch_writer, args=(config.redis_url, config.namespace, sid, f"agent-{i}", 40, queue)
        )
        for i in range(3)
    ]
    for worker in workers:
        worker.start()
    results = [await asyncio.to_thread(queue.get, True, 90) for _ in workers]
    for worker in workers:
        await asyncio.to_thread(worker.join, 30)
        assert worker.exitcode == 0

    returned = sorted(seq for _, seqs in results for seq in seqs)
    assert len(set(returned)) == len(returned), "duplicate seqs handed out"
    events = await manager.get_events(sid)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "gap in the log"
    emitted = [e for e in events if e.type == "modified"]
    assert sorted(e.seq for e in emitted) == returned
    for agent, seqs in results:
        assert {e.seq for e in emitted if e.actor == agent} == set(seqs)
    # every batch is contiguous: its events' (b, i) run in order without another writer in between
    by_seq = {e.seq: e for e in emitted}
    for event in emitted:
        data = event.data or {}
        if data["i"] > 0:
            before = by_seq[event.seq - 1].data or {}
            assert (before["agent"], before["b"], before["i"]) == (data["agent"], data["b"], data["i"] - 1)
