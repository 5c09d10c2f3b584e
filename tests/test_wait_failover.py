"""emit_event(min_replicas=...) around a demotion: typed outcomes, never a raw Redis reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from huddle import (
    EmbeddedRedis,
    RedisUnavailableError,
    ReplicationNotConfirmedError,
    SessionManager,
    SessionManagerConfig,
)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[EmbeddedRedis, EmbeddedRedis]]:
    async with EmbeddedRedis() as old, EmbeddedRedis() as new:
        yield old, new


async def test_a_keyed_retry_on_a_demoted_master_is_a_retryable_unavailable_error(
    pair: tuple[EmbeddedRedis, EmbeddedRedis],
) -> None:
    """The replayed (read-only) script runs on the replica; its WAIT is refused there: RedisUnavailableError."""
    old, new = pair
    admin_old, admin_new = aioredis.Redis(port=old.port), aioredis.Redis(port=new.port)
    try:
        for admin in (admin_old, admin_new):
            await admin.config_set("repl-diskless-sync-delay", 0)
        await admin_new.execute_command("REPLICAOF", "127.0.0.1", old.port)
        config = SessionManagerConfig(redis_url=old.url, namespace="wf", replica_wait_timeout_ms=2000)
        async with SessionManager(config) as manager:
            sid = await manager.create_session("a")
            seq = await manager.emit_event(
                sid, {"type": "modified"}, "a", idempotency_key="k1", min_replicas=1
            )
            await admin_new.execute_command("REPLICAOF", "NO", "ONE")
            await admin_old.execute_command("REPLICAOF", "127.0.0.1", new.port)
            for _ in range(200):  # until `old` has loaded `new`'s copy
                info = await admin_old.info("replication")
                if info.get("master_link_status") == "up":
                    break
                await asyncio.sleep(0.01)
            with pytest.raises(RedisUnavailableError, match="replica"):
                await manager.emit_event(sid, {"type": "modified"}, "a", idempotency_key="k1", min_replicas=1)
        async with SessionManager(SessionManagerConfig(redis_url=new.url, namespace="wf")) as promoted:
            again = await promoted.emit_event(
                sid, {"type": "modified"}, "a", idempotency_key="k1", min_replicas=0
            )
            assert again == seq  # the retry on the new master finds the event: written once
            assert (await promoted.get_session(sid)).last_seq == seq
    finally:
        await admin_old.aclose()
        await admin_new.aclose()


async def test_a_wait_cut_short_by_a_demotion_is_not_confirmed_with_the_seq(
    pair: tuple[EmbeddedRedis, EmbeddedRedis],
) -> None:
    old, new = pair
    admin_old = aioredis.Redis(port=old.port)
    config = SessionManagerConfig(
        redis_url=old.url, namespace="wf", socket_timeout=10, replica_wait_timeout_ms=5000
    )
    try:
        async with SessionManager(config) as manager:
            sid = await manager.create_session("a")
            emit = asyncio.create_task(manager.emit_event(sid, {"type": "modified"}, "a", min_replicas=1))
            await asyncio.sleep(0.3)  # written; WAIT blocks (no replica)
            await admin_old.execute_command("REPLICAOF", "127.0.0.1", new.port)
            with pytest.raises(ReplicationNotConfirmedError) as caught:
                await emit
            assert caught.value.details["seq"] == 2
            assert caught.value.details["replicas_acked"] == 0
    finally:
        await admin_old.aclose()
