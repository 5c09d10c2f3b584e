"""Start-up under faults: ``SessionManager.connect()`` / ``async with`` retry like commands do (issue 16).

The cluster auto-detection probe (``INFO cluster``), the PING and the SCRIPT LOADs of ``connect()`` get the
bounded retries with backoff of the settings (``retry_attempts``, ``retry_backoff_*``); a server still starting
or a cut connection does not fail start-up, a server that never comes up fails it with ``RedisUnavailableError``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cut_proxy import CutProxy

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.embedded import free_port
from huddle.errors import RedisUnavailableError

# A budget far above a redis-server start (~0.1 s here): full-jitter backoff, capped at 0.5 s, 12 retries.
PATIENT = {"retry_attempts": 12, "retry_backoff_base": 0.1, "retry_backoff_cap": 0.5}


def config(url: str, **overrides: Any) -> SessionManagerConfig:
    values: dict[str, Any] = {"redis_url": url, "namespace": f"t{uuid.uuid4().hex[:10]}"}
    values.update(overrides)
    return SessionManagerConfig(**values)


@pytest.fixture
async def proxy(redis_server: EmbeddedRedis) -> AsyncIterator[CutProxy]:
    front = await CutProxy(redis_server.port).start()
    yield front
    await front.stop()


async def emit_works(manager: SessionManager) -> None:
    sid = await manager.create_session("alpha")
    assert await manager.emit_event(sid, {"type": "modified"}, "alpha") == 2


@pytest.mark.parametrize("cluster", [None, False], ids=["auto-detect", "standalone"])
async def test_connect_waits_for_a_redis_that_starts_a_little_later(cluster: bool | None) -> None:
    server = EmbeddedRedis(port=free_port())

    async def start_late() -> None:
        await asyncio.sleep(0.3)
        await asyncio.to_thread(server.start)

    starter = asyncio.ensure_future(start_late())
    try:
        async with SessionManager(config(server.url, cluster=cluster, **PATIENT)) as manager:
            await emit_works(manager)
    finally:
        await starter
        server.stop()


async def test_connect_to_a_redis_that_never_comes_up_fails_typed_and_bounded() -> None:
    began = time.monotonic()
    with pytest.raises(RedisUnavailableError):
        async with SessionManager(config(f"redis://127.0.0.1:{free_port()}/0", retry_attempts=2)):
            pass
    assert time.monotonic() - began < 60  # a generous bound: it gives up instead of waiting forever


async def test_without_retries_a_refused_start_up_fails_at_once(proxy: CutProxy) -> None:
    """The fault is real: with ``retry_attempts=0`` the same cut fails start-up (the tests below can fail)."""
    proxy.refuse_next(1)
    with pytest.raises(RedisUnavailableError):
        await SessionManager(config(proxy.url, retry_attempts=0)).connect()
    assert proxy.cuts == 1


@pytest.mark.parametrize(
    ("fault", "cluster"),
    [
        ("refuse", None),  # the connection of the detection probe is closed at once
        ("INFO", None),  # the probe's INFO cluster is cut
        ("refuse", False),
        ("PING", False),
        ("LOAD", False),  # a SCRIPT LOAD (or FUNCTION LOAD on 7.0+) is cut
        ("LOAD", None),
    ],
)
async def test_one_cut_during_start_up_is_retried(proxy: CutProxy, fault: str, cluster: bool | None) -> None:
    if fault == "refuse":
        proxy.refuse_next(1)
    elif fault == "LOAD":
        proxy.cut_on_request(b"SCRIPT", b"FUNCTION")
    else:
        proxy.cut_on_request(fault.encode())
    async with SessionManager(config(proxy.url, cluster=cluster)) as manager:
        assert proxy.cuts == 1
        assert await manager.store.scripts_loaded()
        await emit_works(manager)


async def test_start_up_survives_several_cuts_within_the_budget(proxy: CutProxy) -> None:
    proxy.refuse_next(3)
    proxy.cut_on_request(b"SCRIPT", b"FUNCTION", times=2)
    async with SessionManager(config(proxy.url, **PATIENT)) as manager:
        assert proxy.cuts == 5
        await emit_works(manager)
