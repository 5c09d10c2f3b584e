"""Helpers for the MCP tests: start ``huddle mcp`` over stdio with the SDK's own client, call tools."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as redis_py
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult

PASS_ENV = {k: os.environ[k] for k in ("PYTHONPATH", "COVERAGE_PROCESS_START") if k in os.environ}
"""MCP clients give servers a minimal environment; keep the import path so the server runs this same code."""

CONTRACT_TOOLS = {
    "create_session", "join_session", "leave_session", "list_sessions", "get_session", "post_event", "handoff",
    "read_events", "wait_for_events", "checkpoint", "complete_session", "list_failures",
}  # fmt: skip


def stdio_params(agent_id: str, redis_url: str, namespace: str, **env: str) -> StdioServerParameters:
    """``python -m huddle mcp --agent-id <agent_id>`` against ``redis_url`` in ``namespace``."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "huddle", "mcp", "--agent-id", agent_id],
        env={"HUDDLE_REDIS_URL": redis_url, "HUDDLE_NAMESPACE": namespace, **PASS_ENV, **env},
    )


@asynccontextmanager
async def stdio_agent(
    agent_id: str, redis_url: str, namespace: str, mode: str = "auto", **env: str
) -> AsyncIterator[Client]:
    """A connected SDK client of a ``huddle mcp`` process acting as ``agent_id`` (``mode="legacy"``: the
    2025 initialize handshake, as clients of that era speak; ``auto``: whatever both sides support)."""
    params = stdio_params(agent_id, redis_url, namespace, **env)
    async with Client(params, read_timeout_seconds=90, mode=mode) as client:
        yield client


async def until_blocked_in_xread(redis_url: str, limit: float = 30.0) -> None:
    """Return once some client of this server is blocked in XREAD (a waiting tool reached its live read)."""
    client = redis_py.from_url(redis_url, decode_responses=True)
    try:
        async with asyncio.timeout(limit):  # bounded, not a timing assertion
            while True:  # Redis has no notification for "a client blocked": poll CLIENT LIST
                clients = await client.client_list()
                if any(c.get("cmd") == "xread" and "b" in c.get("flags", "") for c in clients):
                    return
                await asyncio.sleep(0.02)
    finally:
        await client.aclose()


async def call_ok(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call a tool that must succeed; its structured result."""
    result = await client.call_tool(tool, arguments or {})
    assert isinstance(result, CallToolResult)
    assert not result.is_error, f"{tool} failed: {result.content}"
    assert result.structured_content is not None
    return dict(result.structured_content)


async def call_error(client: Client, tool: str, arguments: dict[str, Any]) -> tuple[str, str]:
    """Call a tool that must fail with a tool error; its (code, text)."""
    result = await client.call_tool(tool, arguments)
    assert isinstance(result, CallToolResult)
    assert result.is_error, f"{tool} unexpectedly succeeded: {result.structured_content}"
    text = result.content[0].text if result.content and result.content[0].type == "text" else ""
    code = (result.structured_content or {}).get("code", "")
    return str(code), text
