"""The blocking client (``huddle.blocking.SessionManager``) against real Redis: threads, retries, errors, subscribe."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from huddle import SessionManagerConfig
from huddle.api.thread_loop import ThreadLoop
from huddle.blocking import SessionManager
from huddle.errors import InvalidEventError, SequenceConflictError, SessionNotFoundError, ShuttingDownError


@pytest.fixture
def blocking(make_config: Callable[..., SessionManagerConfig]) -> Iterator[SessionManager]:
    with SessionManager(make_config(checkpoint_interval=1000)) as manager:
        yield manager


def test_concurrent_writers_in_threads_get_gapless_unique_seqs(blocking: SessionManager) -> None:
    session = blocking.create_session("a0")
    for n in range(1, 8):
        blocking.join_session(session, f"a{n}")
    seqs: list[int] = []
    lock = threading.Lock()

    def write(agent: str) -> None:
        for n in range(40):
            seq = blocking.emit_event(session, {"type": "modified", "data": {"n": n}}, agent)
            with lock:
                seqs.append(seq)

    threads = [threading.Thread(target=write, args=(f"a{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first = 9  # start + 7 joins
    assert sorted(seqs) == list(range(first, first + 320))
    stored = blocking.get_events(session, first)
    assert [e.seq for e in stored] == sorted(seqs)
    for agent in (f"a{n}" for n in range(8)):  # each writer's own events keep its order
        mine = [e.data["n"] for e in stored if e.actor == agent and e.data]
        assert mine == list(range(40))


def test_idempotent_retries_batches_and_errors_are_the_async_ones(blocking: SessionManager) -> None:
    session = blocking.create_session("alice")
    first = blocking.emit_event(session, {"type": "modified"}, "alice", idempotency_key="k1")
    assert blocking.emit_event(session, {"type": "modified"}, "alice", idempotency_key="k1") == first
    assert blocking.emit_events(session, [{"type": "a"}, {"type": "b"}], "alice") == [first + 1, first + 2]
    with pytest.raises(SequenceConflictError):
        blocking.emit_event(session, {"type": "modified"}, "alice", expected_seq=1)
    with pytest.raises(InvalidEventError):
        blocking.emit_event(session, {"type": "start"}, "alice")
    with pytest.raises(SessionNotFoundError):
        blocking.get_session("no-such-session")
    assert blocking.get_session(session).last_seq == first + 2
    checkpoint = blocking.checkpoint(session, force_snapshot=True)
    assert blocking.get_checkpoint(session, checkpoint).checkpoint_id == checkpoint
    assert session in blocking.list_active_sessions()


def test_subscribe_is_a_plain_iterator_that_ends_when_the_session_completes(blocking: SessionManager) -> None:
    session = blocking.create_session("alice")

    def work() -> None:
        for n in range(5):
            blocking.emit_event(session, {"type": "modified", "data": {"n": n}}, "alice")
        blocking.complete_session(session, "alice")

    writer = threading.Thread(target=work)
    writer.start()
    seen = [event.seq for event in blocking.subscribe(session)]
    writer.join()
    assert seen == list(range(1, 8))  # start, 5 events, complete: each once, in order


def test_usable_from_a_thread_that_runs_an_event_loop(blocking: SessionManager) -> None:
    async def notebook_cell() -> int:
        session = blocking.create_session("alice")  # a blocking call inside a running loop (like a notebook)
        return blocking.emit_event(session, {"type": "modified"}, "alice")

    assert asyncio.run(notebook_cell()) == 2


def test_closing_stops_the_loop_thread_and_refuses_calls(
    make_config: Callable[..., SessionManagerConfig],
) -> None:
    manager = SessionManager(make_config())
    session = manager.create_session("alice")
    events = manager.subscribe(session)
    assert next(events).seq == 1
    events.close()
    manager.close()
    assert manager.closed and not manager.loop.is_running()
    with pytest.raises(ShuttingDownError):
        manager.get_session(session)


def test_a_thread_loop_runs_calls_in_order_and_survives_errors_and_interrupts(
    make_config: Callable[..., SessionManagerConfig],
) -> None:
    loop = ThreadLoop(make_config())
    ran: list[int] = []

    async def work(n: int) -> int:
        await asyncio.sleep(0)
        ran.append(n)
        return n * 10

    async def fail(error: BaseException) -> None:
        await asyncio.sleep(0)
        raise error

    with loop.lock:
        assert [loop.run(work(n)) for n in range(3)] == [0, 10, 20]
        with pytest.raises(ValueError, match="bad"):
            loop.run(fail(ValueError("bad")))
        with pytest.raises(KeyboardInterrupt):  # reaches the caller, and the next call still runs
            loop.run(fail(KeyboardInterrupt()))
        assert loop.run(work(3)) == 30
        session = loop.run(loop.manager.create_session("alice"))  # the thread's own manager
        assert loop.run(loop.manager.get_session(session)).session_id == session
        loop.close()
    assert ran == [0, 1, 2, 3] and loop.loop.is_closed()
