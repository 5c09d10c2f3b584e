"""The MCP server over stdio for one agent identity (what ``huddle mcp --agent-id ID`` runs)."""

from __future__ import annotations

from mcp.server.mcpserver import Context

from ...core.manager import SessionManager
from ...ids import check_id
from .server import create_mcp_server
from .tools import Caller


async def serve_stdio(manager: SessionManager, agent_id: str) -> None:
    """Serve MCP on stdin/stdout until the client closes them; every write is recorded as ``agent_id``."""
    caller = Caller(agent_id=check_id(agent_id, "agent id"), role="agent")

    def identify(_ctx: Context) -> Caller:
        return caller

    await create_mcp_server(manager, identify).run_stdio_async()
