"""MCP at ``/mcp`` of a real ``huddle serve`` subprocess, with the SDK's Streamable HTTP client and API tokens."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_support import CONTRACT_TOOLS, call_error, call_ok

from huddle import EmbeddedRedis, SessionManager
from huddle.backend.embedded import free_port

TOKENS = "agent:agent-a=tok-mcp-a,agent:agent-b=tok-mcp-b,observer:watcher=tok-mcp-observer"


@pytest.fixture
def serve_url(redis_server: EmbeddedRedis, namespace: str) -> Iterator[str]:
    """``huddle serve`` on a free port with three tokens; yields the MCP URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUDDLE_")}
    env.update(HUDDLE_REDIS_URL=redis_server.url, HUDDLE_NAMESPACE=namespace, HUDDLE_API_TOKENS=TOKENS)
    process = subprocess.Popen(
        [sys.executable, "-m", "huddle", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30  # bounded wait for the listener, not a timing assertion
        while True:
            assert process.poll() is None, f"huddle serve exited: {process.stderr.read().decode()}"  # type: ignore[union-attr]
            try:
                if httpx2.get(f"{base}/livez", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, "huddle serve did not start listening"
            time.sleep(0.1)
        yield f"{base}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=30)


def client(url: str, token: str) -> Client:
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=120)
    )
    return Client(streamable_http_client(url, http_client=http))


async def test_mcp_in_huddle_serve_acts_as_the_tokens_agent(serve_url: str, manager: SessionManager) -> None:
    async with client(serve_url, "tok-mcp-a") as a, client(serve_url, "tok-mcp-b") as b:
        assert {t.name for t in (await a.list_tools()).tools} == CONTRACT_TOOLS
        sid = (await call_ok(a, "create_session"))["session_id"]
        joined = await call_ok(b, "join_session", {"session_id": sid})
        posted = await call_ok(a, "post_event", {"session_id": sid, "type": "modified", "actor": "agent-b"})
        woken = await call_ok(
            b, "wait_for_events", {"session_id": sid, "after_seq": joined["last_seq"], "timeout_s": 30}
        )
        assert [(e["seq"], e["actor"]) for e in woken["events"]] == [(posted["seq"], "agent-a")]
    assert [e.actor for e in await manager.get_events(sid)] == ["agent-a", "agent-b", "agent-a"]
    async with client(serve_url, "tok-mcp-observer") as observer:
        assert (await call_ok(observer, "get_session", {"session_id": sid}))["last_seq"] == 3
        code, _ = await call_error(observer, "post_event", {"session_id": sid, "type": "modified"})
        assert code == "forbidden"


async def test_mcp_in_huddle_serve_refuses_a_wrong_token(serve_url: str) -> None:
    initialize = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }  # fmt: skip
    headers = {"Accept": "application/json, text/event-stream", "Authorization": "Bearer not-a-token"}
    async with httpx2.AsyncClient(timeout=30) as http:
        for url in (serve_url, serve_url + "/"):
            refused = await http.post(url, json=initialize, headers=headers)
            assert refused.status_code == 401
    with pytest.raises(ExceptionGroup) as caught:  # the SDK client cannot even open its connection
        async with client(serve_url, "not-a-token") as stranger:
            await stranger.list_tools()
    assert caught.group_contains(MCPError, match="error response")


async def test_mcp_in_huddle_serve_answers_at_slashless_mcp_without_a_redirect(serve_url: str) -> None:
    initialize = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }  # fmt: skip
    headers = {"Accept": "application/json, text/event-stream", "Authorization": "Bearer tok-mcp-a"}
    async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as http:
        answered = await http.post(serve_url, json=initialize, headers=headers)
    assert answered.status_code == 200, answered.text
