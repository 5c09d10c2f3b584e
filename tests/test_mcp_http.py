"""The MCP tools over Streamable HTTP (``create_mcp_endpoint``) with the SDK's HTTP client: the token decides who acts.

``TokenIdentity`` below stands in for the HTTP API's auth middleware (helper B's ``huddle.api.auth``), which
resolves a bearer token to an identity in ``scope["state"]["huddle_identity"]``; the endpoint only reads that.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_support import CONTRACT_TOOLS, call_error, call_ok, until_blocked_in_xread
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from huddle import SessionManager
from huddle.api.mcp import create_mcp_endpoint
from huddle.backend.embedded import free_port


@dataclass(frozen=True)
class Identity:
    role: str
    agent_id: str | None
    name: str


TOKENS = {
    "tok-a": Identity("agent", "agent-a", "a"),
    "tok-b": Identity("agent", "agent-b", "b"),
    "tok-observer": Identity("observer", None, "watcher"),
}


class TokenIdentity:
    """Bearer token -> identity in the scope state; unknown tokens get 401 (what the HTTP API's auth does)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"authorization", b"").decode()
            identity = TOKENS.get(header.removeprefix("Bearer "))
            if identity is None:
                await PlainTextResponse("unauthorized", status_code=401)(scope, receive, send)
                return
            scope.setdefault("state", {})["huddle_identity"] = identity
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def served(manager: SessionManager) -> AsyncIterator[str]:
    """A real uvicorn server with the endpoint at /mcp; yields its URL."""
    endpoint = create_mcp_endpoint(manager)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with endpoint.lifespan():
            yield

    app = Starlette(
        routes=[Route("/mcp", endpoint.app, methods=["GET", "POST", "DELETE"])], lifespan=lifespan
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(TokenIdentity(app), port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        await task


def client(url: str, token: str, mode: str = "auto") -> Client:
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=120)
    )
    return Client(streamable_http_client(url, http_client=http), mode=mode)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_agents_act_as_their_token_over_streamable_http(manager: SessionManager, mode: str) -> None:
    async with served(manager) as url, client(url, "tok-a", mode) as a, client(url, "tok-b", mode) as b:
        assert {t.name for t in (await a.list_tools()).tools} == CONTRACT_TOOLS
        sid = (await call_ok(a, "create_session"))["session_id"]
        joined = await call_ok(b, "join_session", {"session_id": sid})
        waiting = asyncio.create_task(
            call_ok(
                b, "wait_for_events", {"session_id": sid, "after_seq": joined["last_seq"], "timeout_s": 60}
            )
        )
        assert manager.config.redis_url is not None
        await until_blocked_in_xread(manager.config.redis_url)  # B's wait is in its live read
        posted = await call_ok(a, "post_event", {"session_id": sid, "type": "modified", "actor": "agent-b"})
        woken = await asyncio.wait_for(waiting, timeout=45)
        assert [(e["seq"], e["actor"]) for e in woken["events"]] == [(posted["seq"], "agent-a")]
        assert [e.actor for e in await manager.get_events(sid)] == ["agent-a", "agent-b", "agent-a"]


async def test_an_identity_without_an_agent_reads_but_cannot_write(manager: SessionManager) -> None:
    sid = await manager.create_session("agent-a")
    async with served(manager) as url, client(url, "tok-observer") as observer:
        assert (await call_ok(observer, "get_session", {"session_id": sid}))["creator"] == "agent-a"
        assert [
            e["type"] for e in (await call_ok(observer, "read_events", {"session_id": sid}))["events"]
        ] == ["start"]
        for tool, arguments in [
            ("create_session", {}),
            ("join_session", {"session_id": sid}),
            ("post_event", {"session_id": sid, "type": "modified"}),
            ("complete_session", {"session_id": sid}),
        ]:
            code, _ = await call_error(observer, tool, arguments)
            assert code == "forbidden", tool
    assert [e.type for e in await manager.get_events(sid)] == ["start"]


async def _post(http: httpx2.AsyncClient, url: str, body: dict[str, Any], **headers: str) -> httpx2.Response:
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    return await http.post(url, json=body, headers={**accept, **headers})


async def test_an_mcp_session_opened_by_one_agent_is_not_usable_with_another_token(
    manager: SessionManager,
) -> None:
    init = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }  # fmt: skip
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "create_session", "arguments": {}},
    }
    async with served(manager) as url, httpx2.AsyncClient(timeout=30) as http:
        opened = await _post(http, url, init, Authorization="Bearer tok-a")
        assert opened.status_code == 200
        session = opened.headers["mcp-session-id"]
        version = {"Mcp-Session-Id": session, "Mcp-Protocol-Version": "2025-06-18"}
        await _post(http, url, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                    Authorization="Bearer tok-a", **version)  # fmt: skip
        hijack = await _post(http, url, call, Authorization="Bearer tok-b", **version)
        assert hijack.status_code == 404
        own = await _post(http, url, call, Authorization="Bearer tok-a", **version)
        assert own.status_code == 200 and '"session_id"' in own.text
