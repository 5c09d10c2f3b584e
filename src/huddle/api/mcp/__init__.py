"""huddle as an MCP server: the same tools over stdio (``huddle mcp``) and Streamable HTTP (``/mcp``)."""

from .http import McpEndpoint, create_mcp_endpoint
from .server import create_mcp_server
from .stdio import serve_stdio
from .tools import Caller

__all__ = ["Caller", "McpEndpoint", "create_mcp_endpoint", "create_mcp_server", "serve_stdio"]
