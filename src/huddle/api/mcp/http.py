"""The MCP tools over Streamable HTTP, for mounting at ``/mcp`` in ``huddle serve`` (the API token decides who acts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import ASGIApp, Receive, Scope, Send

from ...core.manager import SessionManager
from .server import create_mcp_server
from .tools import Caller

IDENTITY_KEY = "huddle_identity"
"""``scope["state"][IDENTITY_KEY]``: the identity the HTTP API's auth middleware resolved from the token."""


def identity_of(scope: Scope) -> Caller:
    """The caller a request's auth identity stands for (duck-typed: ``role``, ``agent_id``); none: anonymous."""
    state = scope.get("state") or {}
    identity = state.get(IDENTITY_KEY) if isinstance(state, dict) else getattr(state, IDENTITY_KEY, None)
    if identity is None:
        return Caller(agent_id=None, role="anonymous")
    agent_id = getattr(identity, "agent_id", None)
    return Caller(
        agent_id=agent_id if isinstance(agent_id, str) else None, role=str(getattr(identity, "role", ""))
    )


def _identify(ctx: Context) -> Caller:
    request = ctx.request_context.request
    scope = getattr(request, "scope", None)
    return identity_of(scope) if scope is not None else Caller(agent_id=None, role="anonymous")


class McpEndpoint:
    """The ASGI app serving MCP (Streamable HTTP) and the lifespan it needs; see ``create_mcp_endpoint``."""

    def __init__(self, manager: SessionManager, *, json_response: bool = False) -> None:
        self.manager = manager
        self.server: MCPServer = create_mcp_server(manager, _identify)
        # Builds the SDK's StreamableHTTPSessionManager; its Starlette wrapper is not used (routing is the host's).
        self.server.streamable_http_app(streamable_http_path="/", json_response=json_response)
        self._sessions = self.server.session_manager
        self.app: ASGIApp = _McpApp(self._sessions)
        """ASGI entry, path-agnostic: mount it at ``/mcp`` (``Route`` for ``/mcp`` itself, ``Mount`` below it)."""

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """Enter once in the host app's lifespan: runs the SDK's session manager (one run per endpoint)."""
        return self._run()

    @asynccontextmanager
    async def _run(self) -> AsyncIterator[None]:
        async with self._sessions.run():
            yield


class _McpApp:
    """An ASGI callable object (not a function), so routers pass it raw ASGI messages."""

    def __init__(self, sessions: StreamableHTTPSessionManager) -> None:
        self._sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        caller = identity_of(scope)
        if caller.agent_id is not None or caller.role != "anonymous":
            # MCP sessions are bound to the credential that opened them: the SDK then answers 404 to another
            # identity presenting the same Mcp-Session-Id.
            token = AccessToken(
                token="huddle", client_id=f"{caller.role}:{caller.agent_id or '-'}", scopes=[]
            )
            scope = {**scope, "user": AuthenticatedUser(token)}
        await self._sessions.handle_request(scope, receive, send)


def create_mcp_endpoint(manager: SessionManager, **options: Any) -> McpEndpoint:
    """The MCP endpoint for the HTTP API: ``.app`` (ASGI, mount at ``/mcp``) and ``.lifespan()`` to enter.

    The host's auth middleware must put the caller's identity (``role``, ``agent_id``) in
    ``scope["state"]["huddle_identity"]``; writes need an agent id, reads do not."""
    return McpEndpoint(manager, **options)
