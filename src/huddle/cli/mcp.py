"""``huddle mcp``: an MCP server over stdio for one agent (what a coding agent's MCP client starts)."""

from __future__ import annotations

import asyncio
import os

import typer

from ..api.mcp import serve_stdio
from ..core.manager import SessionManager
from ..errors import RedisUnavailableError
from ..ids import check_id
from .common import err_console, redis_config


async def run_mcp(agent_id: str) -> None:
    """Serve MCP on stdin/stdout as ``agent_id`` until the client closes the pipe."""
    if not os.environ.get("HUDDLE_REDIS_URL"):
        err_console.print(
            "[yellow]warning[/] no HUDDLE_REDIS_URL: this agent gets a private embedded Redis; "
            "set HUDDLE_REDIS_URL so that agents share sessions"
        )
    async with redis_config() as config:
        manager = SessionManager(config)
        try:
            try:
                await manager.connect()
            except (
                RedisUnavailableError
            ) as exc:  # serve anyway: tools report redis_unavailable until it is back
                err_console.print(f"[yellow]warning[/] Redis is not reachable yet: {exc.message}")
            await serve_stdio(manager, agent_id)
        finally:
            await manager.close()


def mcp_command(
    agent_id: str = typer.Option(
        ...,
        "--agent-id",
        envvar="HUDDLE_AGENT_ID",
        show_envvar=True,
        help="The agent this server acts as: every event it writes is recorded under this id.",
    ),
) -> None:
    """Serve the huddle MCP tools over stdio for one agent (Redis from HUDDLE_REDIS_URL, HUDDLE_NAMESPACE)."""
    asyncio.run(run_mcp(check_id(agent_id, "agent id")))
