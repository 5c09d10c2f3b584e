"""subscribe(): catch-up from the log, then live, every event exactly once and in order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from huddle import Event, EventsTrimmedError, LifecycleNotice, SessionManager

MakeManager = Callable[..., Awaitable[SessionManager]]
EVENT = {"type": "modified", "data": {"n": 1}}


async def _collect(manager: SessionManager, sid: str, from_seq: int, until_seq: int) -> list[Event]:
    seen: list[Event] = []
    async for event in manager.subscribe(sid, from_seq=from_seq):
        seen.append(event)
        if event.seq >= until_seq:
            break
    return seen


async def test_subscriber_started_mid_stream_with_a_writer_running_sees_every_event_once(
    make_manager: MakeManager,
) -> None:
    writer = await make_manager(max_events_per_session=10_000)
    reader = await make_manager(max_events_per_session=10_000)
    sid = await writer.create_session("w")
    total = 600
    started = asyncio.Event()

    async def write() -> None:
        for i in range(total):
            await writer.emit_event(sid, EVENT, "w", auto_checkpoint=False)
            if i == 100:
                started.set()
            if i % 50 == 0:
                await asyncio.sleep(0)  # let the reader interleave with the writer

    writing = asyncio.create_task(write())
    await started.wait()
    seen = await asyncio.wait_for(_collect(reader, sid, 1, total + 1), timeout=30)
    await writing
    assert [e.seq for e in seen] == list(range(1, total + 2))


async def test_subscriber_from_a_later_seq_starts_there(manager: SessionManager) -> None:
    sid = await manager.create_session("w")
    for _ in range(5):
        await manager.emit_event(sid, EVENT, "w")
    seen = await asyncio.wait_for(_collect(manager, sid, 4, 6), timeout=10)
    assert [e.seq for e in seen] == [4, 5, 6]


async def test_subscription_ends_when_the_session_completes(manager: SessionManager) -> None:
    sid = await manager.create_session("w")
    await manager.emit_event(sid, EVENT, "w")
    await manager.complete_session(sid, "w")
    seen = [e async for e in manager.subscribe(sid)]
    assert [e.type for e in seen] == ["start", "modified", "complete"]


async def test_subscribing_to_trimmed_events_raises(make_manager: MakeManager) -> None:
    manager = await make_manager(max_events_per_session=10)
    sid = await manager.create_session("w")
    for _ in range(30):
        await manager.emit_event(sid, EVENT, "w")
    with pytest.raises(EventsTrimmedError) as info:
        await anext(manager.subscribe(sid, from_seq=1))
    assert info.value.details["first_available"] == (await manager.get_session(sid)).first_seq


async def test_lifecycle_feed_reports_joins_and_leaves(make_manager: MakeManager) -> None:
    watcher = await make_manager()
    actor = await make_manager()
    notices: list[LifecycleNotice] = []
    ready = asyncio.Event()

    async def watch() -> None:
        feed = watcher.lifecycle()
        ready.set()
        async for notice in feed:
            notices.append(notice)
            if notice.type == "leave":
                return

    task = asyncio.create_task(watch())
    await ready.wait()
    # The feed is pub/sub: wait until its subscription is registered on the server before acting.
    for _ in range(500):
        ((_, subscribers),) = await actor.client.pubsub_numsub(actor.keys.global_channel)
        if subscribers:
            break
        await asyncio.sleep(0.01)
    sid = await actor.create_session("a1")
    await actor.join_session(sid, "a2")
    await actor.leave_session(sid, "a2")
    await asyncio.wait_for(task, timeout=10)
    assert [(n.type, n.session_id, n.seq, n.actor) for n in notices] == [
        ("start", sid, 1, "a1"),
        ("join", sid, 2, "a2"),
        ("leave", sid, 3, "a2"),
    ]
