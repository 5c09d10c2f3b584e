"""Shared CLI plumbing: where Redis is (env or embedded), one-line errors, the console."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from rich.console import Console

from ..backend.embedded import EmbeddedRedis
from ..config import SessionManagerConfig

console = Console()
err_console = Console(stderr=True)


@asynccontextmanager
async def redis_config(**overrides: object) -> AsyncIterator[SessionManagerConfig]:
    """Settings from ``HUDDLE_*``; without ``HUDDLE_REDIS_URL`` a private embedded redis-server is started."""
    if os.environ.get("HUDDLE_REDIS_URL"):
        yield SessionManagerConfig(**overrides)  # type: ignore[arg-type]
        return
    async with EmbeddedRedis() as server:
        err_console.print(
            f"[dim]no HUDDLE_REDIS_URL: using an embedded redis-server {server.version()} at {server.url}[/]"
        )
        yield SessionManagerConfig(**{"redis_url": server.url, **overrides})  # type: ignore[arg-type]
