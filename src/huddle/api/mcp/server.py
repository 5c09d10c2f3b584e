"""The huddle MCP server: tools, resources and the ``coordinate`` prompt on the official ``mcp`` SDK."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ResourceNotFoundError,
)
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from ... import __version__
from ...core.manager import SessionManager
from ...errors import HuddleError, SessionNotFoundError
from ...models import SessionDocument
from . import prompt
from .descriptions import INSTRUCTIONS, TOOL_DESCRIPTIONS
from .refusals import HuddleServer, clip, failure
from .schemas import (
    Appended,
    CheckpointTaken,
    EventPage,
    FailureList,
    SessionCreated,
    SessionJoined,
    SessionLeft,
    SessionList,
)
from .tools import Caller, HuddleTools, ToolRefused, error_text, event_line
from .watch import SessionWatch

log = logging.getLogger("huddle.api.mcp")

T = TypeVar("T")

Identify = Callable[[Context], Caller]
"""Maps a request's context to the caller (stdio: the fixed agent; HTTP: the API token's identity)."""

SessionId = Annotated[
    str, Field(description="the session's id, e.g. s-3f2a... (from create_session or list_sessions)")
]
MAX_SEQ = 2**53 - 1
"""Largest seq a tool accepts (JSON-safe; the stream ids behind seqs end at 2**64 - 1)."""
AfterSeq = Annotated[
    int,
    Field(ge=0, le=MAX_SEQ, description="only events with a seq greater than this (0: from the start)"),
]
Limit = Annotated[int, Field(ge=1, le=200, description="at most this many events in the reply")]
Types = Annotated[
    list[str] | None, Field(description="only these event types, e.g. ['broke', 'fixed']; omit for all")
]

_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


def _result(model: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json", exclude_unset=True),
    )


async def _run(work: Callable[[], Awaitable[tuple[BaseModel, str]]]) -> CallToolResult:
    """Run one tool: huddle's typed errors become MCP tool errors carrying their code; the server keeps going."""
    try:
        model, text = await work()
    except (HuddleError, ToolRefused) as exc:
        return failure(exc.code, error_text(exc), exc.message)
    except Exception as exc:  # the tool boundary: report, log, keep serving
        log.exception("MCP tool failed unexpectedly")
        return failure("internal_error", f"internal_error: {type(exc).__name__}", type(exc).__name__)
    return _result(model, text)


class HuddleMcp:
    """Registers huddle's tools, resources and prompt on an ``MCPServer``."""

    def __init__(self, manager: SessionManager, identify: Identify) -> None:
        self.tools = HuddleTools(manager)
        self.manager = manager
        self.identify = identify

    async def create_session(
        self,
        ctx: Context,
        session_id: Annotated[str | None, Field(description="id to use; omit for a fresh random id")] = None,
        metadata: Annotated[
            dict[str, Any] | None, Field(description="free JSON about the work, e.g. {'feature': 'login'}")
        ] = None,
        initial_state: Annotated[str | None, Field(description="starting state (default 'working')")] = None,
    ) -> Annotated[CallToolResult, SessionCreated]:
        """Create a session with you as its first member."""
        caller = self.identify(ctx)
        return await _run(lambda: self.tools.create_session(caller, session_id, metadata, initial_state))

    async def join_session(
        self, ctx: Context, session_id: SessionId
    ) -> Annotated[CallToolResult, SessionJoined]:
        """Join a session as yourself."""
        caller = self.identify(ctx)
        return await _run(lambda: self.tools.join_session(caller, session_id))

    async def leave_session(
        self, ctx: Context, session_id: SessionId
    ) -> Annotated[CallToolResult, SessionLeft]:
        """Leave a session."""
        caller = self.identify(ctx)
        return await _run(lambda: self.tools.leave_session(caller, session_id))

    async def list_sessions(
        self,
        ctx: Context,
        scope: Annotated[
            Literal["mine", "all"],
            Field(description="'mine': sessions you are a member of; 'all': every live one"),
        ] = "mine",
        offset: Annotated[
            int, Field(ge=0, le=10_000, description="skip this many (from next_offset of the last page)")
        ] = 0,
        limit: Annotated[int, Field(ge=1, le=100, description="at most this many sessions")] = 20,
    ) -> Annotated[CallToolResult, SessionList]:
        """List live sessions, most recently active first."""
        caller = self.identify(ctx)
        return await _run(lambda: self.tools.list_sessions(caller, scope, offset, limit))

    async def get_session(
        self, ctx: Context, session_id: SessionId
    ) -> Annotated[CallToolResult, SessionDocument]:
        """The session document: state, members, last seq, checkpoint, expiry."""
        self.identify(ctx)

        async def work() -> tuple[BaseModel, str]:
            doc = await self.manager.get_session(session_id)
            members = ", ".join(sorted(doc.agents)) or "none"
            return (
                doc,
                f"{session_id}: state {doc.state} ({doc.status}), last seq {doc.last_seq}, agents {members}",
            )

        return await _run(work)

    async def post_event(
        self,
        ctx: Context,
        session_id: SessionId,
        type: Annotated[
            str,
            Field(
                description="what happened: modified, broke, fixed, test_pass, or your own name ([A-Za-z0-9_.:-])"
            ),
        ],
        element_type: Annotated[
            str | None, Field(description="kind of thing changed, e.g. 'api_endpoint', 'component', 'test'")
        ] = None,
        operation: Annotated[str | None, Field(description="e.g. 'create', 'update', 'delete'")] = None,
        entity_ids: Annotated[
            list[str] | None, Field(description="ids of the things changed, e.g. ['POST /login']")
        ] = None,
        description: Annotated[
            str | None, Field(description="one or two sentences for your collaborators")
        ] = None,
        from_state: Annotated[
            str | None, Field(description="state transition: the session's current state (must match)")
        ] = None,
        to_state: Annotated[
            str | None, Field(description="state transition: the new state, e.g. 'broken'")
        ] = None,
        confidence: Annotated[
            float | None, Field(ge=0, le=1, description="how sure you are of the transition, 0..1")
        ] = None,
        data: Annotated[dict[str, Any] | None, Field(description="optional extra JSON")] = None,
        idempotency_key: Annotated[
            str | None, Field(description="retrying with the same key returns the first seq, writing nothing")
        ] = None,
    ) -> Annotated[CallToolResult, Appended]:
        """Post an event to a session as yourself."""
        caller = self.identify(ctx)
        event: dict[str, Any] = {"type": type}
        if element_type is not None or operation is not None or entity_ids:
            change: dict[str, Any] = {"element_type": element_type, "operation": operation}
            change.update(entity_ids=entity_ids or [], description=description)
            event["change_info"] = {k: v for k, v in change.items() if v is not None}
        elif description is not None:
            # Without change details (a plain 'broke' report) the description travels in data.
            data = {**(data or {}), "description": description}
        if from_state is not None or to_state is not None or confidence is not None:
            transition: dict[str, Any] = {"from": from_state, "to": to_state, "confidence": confidence}
            event["state_transition"] = {k: v for k, v in transition.items() if v is not None}
        if data is not None:
            event["data"] = data
        return await _run(lambda: self.tools.post_event(caller, session_id, event, idempotency_key))

    async def handoff(
        self,
        ctx: Context,
        session_id: SessionId,
        to_agent: Annotated[str, Field(description="agent id that takes the work over")],
        note: Annotated[str, Field(max_length=4000, description="what is done, what is left, where to look")],
        entity_ids: Annotated[list[str] | None, Field(description="ids of the things handed over")] = None,
    ) -> Annotated[CallToolResult, Appended]:
        """Hand work over to another agent (a 'handoff' event with your note)."""
        caller = self.identify(ctx)
        return await _run(lambda: self.tools.handoff(caller, session_id, to_agent, note, entity_ids or []))

    async def read_events(
        self,
        ctx: Context,
        session_id: SessionId,
        after_seq: AfterSeq = 0,
        limit: Limit = 50,
        types: Types = None,
    ) -> Annotated[CallToolResult, EventPage]:
        """Read stored events after a seq, oldest first, one page at a time."""
        self.identify(ctx)
        return await _run(lambda: self.tools.read_events(session_id, after_seq, limit, types))

    async def wait_for_events(
        self,
        ctx: Context,
        session_id: SessionId,
        after_seq: AfterSeq,
        timeout_s: Annotated[
            float, Field(ge=0, le=60, description="give up after this many seconds (max 60)")
        ] = 30,
        types: Types = None,
        limit: Limit = 50,
    ) -> Annotated[CallToolResult, EventPage]:
        """Wait until another agent writes an event after a seq; returns at once if one already did."""
        caller = self.identify(ctx)
        return await _run(
            lambda: self.tools.wait_for_events(caller, session_id, after_seq, timeout_s, types, limit)
        )

    async def checkpoint(
        self,
        ctx: Context,
        session_id: SessionId,
        reason: Annotated[str, Field(description="short name, e.g. 'before-refactor'")] = "manual",
    ) -> Annotated[CallToolResult, CheckpointTaken]:
        """Store a checkpoint of the session's current state."""
        caller = self.identify(ctx)
        return await _run(lambda: self.tools.checkpoint(caller, session_id, reason))

    async def complete_session(
        self, ctx: Context, session_id: SessionId
    ) -> Annotated[CallToolResult, Appended]:
        """Mark the session completed (it then expires after a grace period)."""
        caller = self.identify(ctx)
        return await _run(lambda: self.tools.complete_session(caller, session_id))

    async def list_failures(
        self,
        ctx: Context,
        session_id: Annotated[str | None, Field(description="only this session's snapshots")] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="at most this many")] = 20,
    ) -> Annotated[CallToolResult, FailureList]:
        """List failure snapshots (taken when a session broke), newest first."""
        self.identify(ctx)
        return await _run(lambda: self.tools.list_failures(session_id, limit))

    # -- resources -----------------------------------------------------------------------------------------
    async def session_resource(self, session_id: str) -> str:
        """The session document as JSON."""
        doc = await self._resource(self.manager.get_session(session_id))
        return doc.model_dump_json(indent=2)

    async def timeline_resource(self, session_id: str) -> str:
        """The session's last 50 events, one readable line each."""
        doc = await self._resource(self.manager.get_session(session_id))
        first = max(doc.first_seq, doc.last_seq - 49, 1)
        events = await self._resource(self.manager.get_events(session_id, first))
        head = (
            f"session {session_id}: state {doc.state} ({doc.status}), agents {', '.join(sorted(doc.agents))}"
        )
        return "\n".join([head, *(event_line(e) for e in events)])

    async def _resource(self, work: Awaitable[T]) -> T:
        try:
            return await work
        except SessionNotFoundError as exc:
            raise ResourceNotFoundError(clip(error_text(exc))) from exc
        except HuddleError as exc:
            raise ResourceError(clip(error_text(exc))) from exc


def create_mcp_server(manager: SessionManager, identify: Identify) -> MCPServer:
    """An ``MCPServer`` whose tools act through ``manager`` as the caller ``identify`` returns."""
    bus = InMemorySubscriptionBus()
    server: MCPServer = HuddleServer(
        "huddle",
        title="huddle sessions",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level="WARNING",
        subscriptions=bus,
        middleware=[SessionWatch(manager, bus)],
    )
    door = HuddleMcp(manager, identify)
    for name, (description, read_only) in TOOL_DESCRIPTIONS.items():
        server.add_tool(
            getattr(door, name),
            name=name,
            description=description,
            annotations=_READ if read_only else _WRITE,
            structured_output=True,
        )
    server.resource(
        "huddle://sessions/{session_id}",
        name="session",
        description="A huddle session's document (state, members, last seq) as JSON.",
        mime_type="application/json",
    )(door.session_resource)
    server.resource(
        "huddle://sessions/{session_id}/timeline",
        name="timeline",
        description="A huddle session's recent events (last 50), one readable line each.",
        mime_type="text/plain",
    )(door.timeline_resource)
    server.prompt(name="coordinate", description="How to work with other agents in a huddle session.")(
        prompt.coordinate
    )
    return server
