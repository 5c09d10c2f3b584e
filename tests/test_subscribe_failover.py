"""A subscription across a failover that lost events it had delivered: it ends with EventsRolledBackError."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from huddle import EmbeddedRedis, EventsRolledBackError, SessionManager, SessionManagerConfig
from huddle.core import subscription
from huddle.models import Event


@pytest.fixture
async def servers() -> AsyncIterator[tuple[EmbeddedRedis, EmbeddedRedis]]:
    async with EmbeddedRedis() as old, EmbeddedRedis() as new:
        yield old, new


@pytest.fixture
async def admins(
    servers: tuple[EmbeddedRedis, EmbeddedRedis],
) -> AsyncIterator[tuple[aioredis.Redis, aioredis.Redis]]:
    """Clients of (old, new), with `new` a replica of `old`; full syncs start at once (7.0 waits 5 s)."""
    old, new = servers
    admin_old, admin_new = aioredis.Redis(port=old.port), aioredis.Redis(port=new.port)
    try:
        for admin in (admin_old, admin_new):
            await admin.config_set("repl-diskless-sync-delay", 0)
        await admin_new.execute_command("REPLICAOF", "127.0.0.1", old.port)
        yield admin_old, admin_new
    finally:
        await admin_old.aclose()
        await admin_new.aclose()


async def synced(master: aioredis.Redis) -> None:
    """Wait until the replica has everything written so far (WAIT covers only the caller's own writes)."""
    await master.set("rb:fence", 1)
    assert await master.execute_command("WAIT", 1, 5000) == 1


async def _until(predicate: object, what: str) -> None:
    for _ in range(500):
        if callable(predicate) and predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")  # pragma: no cover


@pytest.mark.parametrize("window", [512, 4])
async def test_delivered_events_lost_in_a_failover_end_the_subscription_with_the_first_changed_seq(
    servers: tuple[EmbeddedRedis, EmbeddedRedis],
    admins: tuple[aioredis.Redis, aioredis.Redis],
    window: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a window smaller than the loss, the first seq it cannot vouch for is named (never a later one)."""
    monkeypatch.setattr(subscription, "WINDOW", window)
    old, new = servers
    admin_old, admin_new = admins
    async with SessionManager(SessionManagerConfig(redis_url=old.url, namespace="rb")) as manager:
        sid = await manager.create_session("a")
        for n in range(5):
            await manager.emit_event(sid, {"type": "modified", "data": {"n": n}}, "a")
        await synced(admin_old)
        await admin_new.execute_command("REPLICAOF", "NO", "ONE")  # `new` keeps seqs ..6
        last_kept = (await manager.get_session(sid)).last_seq
        seen: list[Event] = []
        failure: list[BaseException] = []

        async def follow() -> None:
            try:
                async for event in manager.subscribe(sid):
                    seen.append(event)
            except BaseException as exc:
                failure.append(exc)
                raise

        task = asyncio.create_task(follow())
        for n in range(5):  # only on `old`: lost when it follows `new`
            await manager.emit_event(sid, {"type": "modified", "data": {"lost": n}}, "a")
        last_lost = (await manager.get_session(sid)).last_seq
        await _until(
            lambda: bool(seen) and seen[-1].seq == last_lost, "the subscriber to deliver every event"
        )
        await admin_old.execute_command("REPLICAOF", "127.0.0.1", new.port)  # the blocked read is unblocked
        await _until(lambda: bool(failure), "the subscription to end")
        await asyncio.gather(task, return_exceptions=True)
        error = failure[0]
        assert isinstance(error, EventsRolledBackError), repr(error)
        assert error.details["first_changed_seq"] == (last_kept + 1 if window > 5 else 1)
        assert error.details["last_delivered_seq"] == last_lost


async def test_a_subscription_through_a_demotion_without_loss_goes_on(
    servers: tuple[EmbeddedRedis, EmbeddedRedis], admins: tuple[aioredis.Redis, aioredis.Redis]
) -> None:
    """Every delivered event survived: no false alarm, the subscription keeps delivering from the new master."""
    old, new = servers
    admin_old, admin_new = admins
    async with SessionManager(SessionManagerConfig(redis_url=old.url, namespace="rb")) as manager:
        sid = await manager.create_session("a")
        seen: list[int] = []
        task = asyncio.create_task(_collect(manager, sid, seen))
        for n in range(5):
            await manager.emit_event(sid, {"type": "modified", "data": {"n": n}}, "a")
        await synced(admin_old)
        kept = (await manager.get_session(sid)).last_seq
        await _until(lambda: bool(seen) and seen[-1] == kept, "the subscriber to deliver every event")
        await admin_new.execute_command("REPLICAOF", "NO", "ONE")
        await admin_old.execute_command("REPLICAOF", "127.0.0.1", new.port)
        async with SessionManager(SessionManagerConfig(redis_url=new.url, namespace="rb")) as writer:
            await writer.emit_event(sid, {"type": "modified"}, "a")
        await _until(lambda: seen[-1] == kept + 1, "the event written on the new master to arrive")
        assert not task.done(), task
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert seen == list(range(1, kept + 2))


async def _collect(manager: SessionManager, sid: str, seen: list[int]) -> None:
    async for event in manager.subscribe(sid):
        seen.append(event.seq)
