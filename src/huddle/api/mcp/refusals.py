"""The SDK's ``MCPServer`` with huddle's refusal rules: every failed call is a tool error with a code."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError, UnexpectedToolError
from mcp_types import CallToolResult, InputRequiredResult, TextContent
from pydantic import AnyUrl, ValidationError

from .descriptions import TOOL_DESCRIPTIONS
from .schemas import ToolErrorBody

log = logging.getLogger("huddle.api.mcp")

MAX_ERROR_CHARS = 1000
"""A refusal quotes at most this much: an error must not flood a model's context (ids are echoed back)."""


def clip(text: str) -> str:
    """``text`` cut at ``MAX_ERROR_CHARS`` (saying how long it was)."""
    return text if len(text) <= MAX_ERROR_CHARS else f"{text[:MAX_ERROR_CHARS]}... ({len(text)} characters)"


def failure(code: str, text: str, message: str) -> CallToolResult:
    """A tool error result: ``text`` for the model, ``{code, message}`` as structured content."""
    text, message = clip(text), clip(message)
    body = ToolErrorBody(code=code, message=message).model_dump(mode="json")
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=body, is_error=True
    )


def _invalid_arguments(tool: str, exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in error['loc']) or 'arguments'}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)[:5]
    ]
    return f"invalid arguments for {tool}: " + "; ".join(problems)


class HuddleServer(MCPServer):
    """``MCPServer`` whose refusals before a tool runs (unknown tool, arguments outside its input schema) are
    tool errors with a code too, like every huddle refusal; a crash is ``internal_error``, logged."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            log.exception("MCP tool %r failed unexpectedly", name[:64])
            return failure("internal_error", "internal_error: the tool failed", "the tool failed")
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                message = _invalid_arguments(name, exc.__cause__)
                return failure("invalid_request", f"invalid_request: {message}", message)
            if name not in TOOL_DESCRIPTIONS:
                message = f"no tool named {name[:64]!r}; list_tools names the tools"
                return failure("not_found", f"not_found: {message}", message)
            return failure("invalid_request", f"invalid_request: {exc}", str(exc))

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[Any, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        try:
            return await super().read_resource(uri, context)
        except ResourceNotFoundError as exc:  # the SDK's "Unknown resource: <uri>" quotes any length of URI
            if len(str(exc)) <= MAX_ERROR_CHARS:
                raise
            raise ResourceNotFoundError(clip(str(exc))) from exc
