"""Redis killed and restarted: the same manager works again and no acknowledged event is lost."""

from __future__ import annotations

import asyncio

import pytest

from huddle import EmbeddedRedis, Event, RedisUnavailableError, SessionManager, SessionManagerConfig

EVENT = {"type": "modified", "data": {"payload": "x" * 100}}


@pytest.fixture
def aof_server() -> EmbeddedRedis:
    server = EmbeddedRedis(appendonly=True).start()
    yield server  # type: ignore[misc]
    server.stop()


async def test_manager_survives_a_redis_crash_and_loses_no_acknowledged_event(
    aof_server: EmbeddedRedis,
) -> None:
    config = SessionManagerConfig(
        redis_url=aof_server.url, retry_attempts=2, retry_backoff_base=0.01, max_events_per_session=10_000
    )
    async with SessionManager(config) as manager:
        sid = await manager.create_session("a1")
        acknowledged = [await manager.emit_event(sid, EVENT, "a1") for _ in range(200)]

        await asyncio.to_thread(aof_server.stop, kill=True, cleanup=False)
        with pytest.raises(RedisUnavailableError):
            await manager.emit_event(sid, EVENT, "a1")
        await asyncio.to_thread(aof_server.start)

        acknowledged.append(await manager.emit_event(sid, EVENT, "a1"))  # same manager, no rebuild
        stored = {e.seq for e in await manager.get_events(sid)}
        assert set(acknowledged) <= stored
        events = await manager.get_events(sid)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_subscription_resumes_after_a_redis_restart_without_gaps_or_repeats(
    aof_server: EmbeddedRedis,
) -> None:
    config = SessionManagerConfig(redis_url=aof_server.url, retry_attempts=1, retry_backoff_base=0.01)
    async with SessionManager(config) as writer, SessionManager(config) as reader:
        sid = await writer.create_session("a1")
        seen: list[Event] = []
        got_five = asyncio.Event()

        async def follow() -> None:
            async for event in reader.subscribe(sid):
                seen.append(event)
                if event.seq == 5:
                    got_five.set()
                if event.seq == 10:
                    return

        task = asyncio.create_task(follow())
        for _ in range(4):
            await writer.emit_event(sid, EVENT, "a1")
        await asyncio.wait_for(got_five.wait(), timeout=10)
        await asyncio.to_thread(aof_server.restart)
        for _ in range(5):
            await writer.emit_event(sid, EVENT, "a1")
        await asyncio.wait_for(task, timeout=30)
        assert [e.seq for e in seen] == list(range(1, 11))
