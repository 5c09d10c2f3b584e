"""What each MCP tool does, on ``SessionManager`` only, as the caller's identity (never an argument)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...core.manager import SYSTEM_ACTOR, SessionManager
from ...errors import HuddleError, SessionNotFoundError
from ...ids import check_id
from ...models import Event
from .schemas import (
    Appended,
    CheckpointTaken,
    EventOut,
    EventPage,
    FailureList,
    SessionCreated,
    SessionJoined,
    SessionLeft,
    SessionList,
    SessionSummary,
)

MAX_PAGE = 200
"""Most events one read returns: a reply must never flood a model's context."""
MAX_SESSIONS_PAGE = 100
MAX_WAIT_S = 60.0


class ToolRefused(Exception):
    """A call the MCP door itself refuses (e.g. a write without an agent identity); carries a stable code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Caller:
    """Who is calling: the server's agent (stdio) or the API token's identity (HTTP)."""

    agent_id: str | None
    role: str = "agent"

    def actor(self) -> str:
        """The agent id writes are recorded under; refuses callers that are not an agent."""
        if self.agent_id is None or self.role not in ("agent", "admin"):
            raise ToolRefused(
                "forbidden",
                f"this connection ({self.role} without an agent id) may read but not write; "
                "connect with an agent token to act in sessions",
            )
        return self.agent_id


def event_line(event: Event) -> str:
    """One readable line per event, for the text part of a reply and the timeline resource."""
    line = f"#{event.seq} {event.type} by {event.actor}"
    if event.state_transition is not None:
        line += f" [{event.state_transition.from_state} -> {event.state_transition.to}]"
    info = event.change_info if event.type != "handoff" else None  # a handoff's line names its target
    if info is not None:
        line += f" {info.operation} {info.element_type}"
        if info.entity_ids:
            shown = ", ".join(info.entity_ids[:5])
            line += f" ({shown}{', ...' if len(info.entity_ids) > 5 else ''})"
        if info.description:
            line += f": {info.description}"
    data = event.data or {}
    if event.change_info is None and isinstance(data.get("description"), str):
        line += f": {data['description']}"
    if event.type == "handoff" and "to_agent" in data:
        line += f" -> {data['to_agent']}" + (f": {data['note']}" if data.get("note") else "")
    return line


def _page_text(head: str, events: Sequence[Event]) -> str:
    return "\n".join([head, *(event_line(e) for e in events)])


class HuddleTools:
    """The MCP tools' behaviour; every call goes through ``SessionManager``."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        # Each blocked wait holds a pooled connection (XREAD BLOCK): keep half the pool for everything else.
        self._wait_slots = asyncio.Semaphore(max(1, manager.config.max_connections // 2))

    async def create_session(
        self,
        caller: Caller,
        session_id: str | None,
        metadata: dict[str, Any] | None,
        initial_state: str | None,
    ) -> tuple[SessionCreated, str]:
        """Create a session with the caller as its first member."""
        sid = await self.manager.create_session(
            caller.actor(), session_id=session_id, metadata=metadata, initial_state=initial_state
        )
        return SessionCreated(session_id=sid), f"created session {sid}; you ({caller.agent_id}) are a member"

    async def join_session(self, caller: Caller, session_id: str) -> tuple[SessionJoined, str]:
        """Join as the caller; reports the seq to wait after."""
        joined = await self.manager.join_session(session_id, caller.actor())
        doc = await self.manager.get_session(session_id)
        reply = SessionJoined(session_id=session_id, joined=joined, last_seq=doc.last_seq, state=doc.state)
        verb = "joined" if joined else "already a member of"
        return reply, f"{verb} {session_id} (state {doc.state}, last seq {doc.last_seq})"

    async def leave_session(self, caller: Caller, session_id: str) -> tuple[SessionLeft, str]:
        """Leave as the caller."""
        left = await self.manager.leave_session(session_id, caller.actor())
        return SessionLeft(session_id=session_id, left=left), (
            f"left {session_id}" if left else f"you were not a member of {session_id}"
        )

    async def list_sessions(
        self, caller: Caller, scope: str, offset: int, limit: int
    ) -> tuple[SessionList, str]:
        """Live sessions (the caller's or all), most recently active first, one bounded page."""
        limit = min(limit, MAX_SESSIONS_PAGE)
        if scope == "mine":
            if caller.agent_id is None:
                raise ToolRefused("forbidden", "scope 'mine' needs an agent identity; use scope 'all'")
            ids = await self.manager.get_sessions_by_agent(caller.agent_id)
        else:
            ids = await self.manager.list_active_sessions(limit=offset + limit + 1)
        page = ids[offset : offset + limit]
        docs = await asyncio.gather(*(self._summary(sid) for sid in page))
        sessions = [doc for doc in docs if doc is not None]
        next_offset = offset + limit if len(ids) > offset + limit else None
        lines = [f"{s.session_id}: {s.state} ({s.status}), agents {', '.join(s.agents)}, last seq {s.last_seq}"
                 for s in sessions]  # fmt: skip
        head = f"{len(sessions)} session(s)" + (f"; more from offset {next_offset}" if next_offset else "")
        return SessionList(sessions=sessions, next_offset=next_offset), "\n".join([head, *lines])

    async def _summary(self, session_id: str) -> SessionSummary | None:
        try:
            doc = await self.manager.get_session(session_id)
        except SessionNotFoundError:
            return None  # expired between the index read and this one
        return SessionSummary(
            session_id=doc.session_id, state=doc.state, status=doc.status, agents=sorted(doc.agents),
            last_seq=doc.last_seq, updated_at=doc.updated_at,
        )  # fmt: skip

    async def post_event(
        self, caller: Caller, session_id: str, event: dict[str, Any], idempotency_key: str | None
    ) -> tuple[Appended, str]:
        """Append one event as the caller."""
        seq = await self.manager.emit_event(
            session_id, event, caller.actor(), idempotency_key=idempotency_key
        )
        transition = event.get("state_transition")
        moved = f", state {transition['from']} -> {transition['to']}" if transition else ""
        return Appended(seq=seq), f"posted {event['type']} as seq {seq} in {session_id}{moved}"

    async def handoff(
        self, caller: Caller, session_id: str, to_agent: str, note: str, entity_ids: list[str]
    ) -> tuple[Appended, str]:
        """Append a 'handoff' event from the caller to ``to_agent``."""
        check_id(to_agent, "agent id")
        event: dict[str, Any] = {"type": "handoff", "data": {"to_agent": to_agent, "note": note}}
        if entity_ids:
            event["change_info"] = {"element_type": "work", "operation": "handoff", "entity_ids": entity_ids}
        seq = await self.manager.emit_event(session_id, event, caller.actor())
        return Appended(seq=seq), f"handed off to {to_agent} as seq {seq} in {session_id}"

    async def read_events(
        self, session_id: str, after_seq: int, limit: int, types: list[str] | None
    ) -> tuple[EventPage, str]:
        """Stored events after ``after_seq`` (one bounded page, optionally only some types)."""
        page, has_more = await self._stored_after(session_id, after_seq, limit)
        wanted = set(types) if types else None
        events = [e for e in page if wanted is None or e.type in wanted]
        last = page[-1].seq if page else after_seq
        reply = EventPage(
            events=[EventOut.of(e) for e in events], last_seq=last, has_more=has_more, timed_out=False
        )
        more = "; more after it" if has_more else ""
        return reply, _page_text(
            f"{len(events)} event(s) after seq {after_seq}, read up to {last}{more}", events
        )

    async def _stored_after(self, session_id: str, after_seq: int, limit: int) -> tuple[list[Event], bool]:
        limit = max(1, min(limit, MAX_PAGE))
        events = await self.manager.get_events(session_id, after_seq + 1, limit=limit + 1)
        return events[:limit], len(events) > limit

    async def wait_for_events(
        self,
        caller: Caller,
        session_id: str,
        after_seq: int,
        timeout_s: float,
        types: list[str] | None,
        limit: int,
    ) -> tuple[EventPage, str]:
        """Events after ``after_seq``; blocks (up to ``timeout_s``) until another agent writes one."""
        wanted = set(types) if types else None

        def wakes(event: Event) -> bool:
            # The caller's own events are already known to it and huddle's own (auto-checkpoints) are not
            # news: waiting is for collaborators.
            return (wanted is None or event.type in wanted) and event.actor not in (
                caller.agent_id,
                SYSTEM_ACTOR,
            )

        page, _ = await self._stored_after(session_id, after_seq, limit)
        scanned = page[-1].seq if page else after_seq
        woken = any(wakes(e) for e in page)
        ended = False
        if not woken and timeout_s > 0:
            # XREAD BLOCK on the session's stream (through subscribe): wakes as soon as the event is appended.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(timeout_s, MAX_WAIT_S)), self._wait_slots:
                    feed = self.manager.subscribe(session_id, scanned + 1)
                    async with contextlib.aclosing(feed):  # type: ignore[type-var]
                        async for event in feed:
                            scanned = event.seq
                            if wakes(event):
                                woken = True
                                break
                        else:
                            ended = True  # completed and fully read, or expired: nothing more will come
        if not woken:
            reply = EventPage(events=[], last_seq=scanned, has_more=False, timed_out=not ended)
            if ended:
                return reply, f"session {session_id} is completed or gone: no more events will come"
            return reply, f"no new events from other agents after seq {after_seq} (waited {timeout_s:g} s)"
        return await self.read_events(session_id, after_seq, limit, types)

    async def checkpoint(self, caller: Caller, session_id: str, reason: str) -> tuple[CheckpointTaken, str]:
        """Store a checkpoint of the session, recorded as the caller's."""
        cp = await self.manager.checkpoint(session_id, actor=caller.actor(), reason=reason)
        return CheckpointTaken(checkpoint_id=cp), f"checkpoint {cp} of {session_id}"

    async def complete_session(self, caller: Caller, session_id: str) -> tuple[Appended, str]:
        """Mark the session completed as the caller."""
        seq = await self.manager.complete_session(session_id, caller.actor())
        return Appended(seq=seq), f"completed {session_id} (seq {seq}); it expires after the grace period"

    async def list_failures(self, session_id: str | None, limit: int) -> tuple[FailureList, str]:
        """Failure snapshots, newest first (of one session if given)."""
        limit = max(1, min(limit, MAX_SESSIONS_PAGE))
        refs = await self.manager.list_failure_snapshots(limit if session_id is None else MAX_PAGE * 5)
        if session_id is not None:
            refs = [r for r in refs if r.session_id == session_id]
        refs = refs[:limit]
        lines = [f"{r.session_id} {r.snapshot_id} at {r.created_at.isoformat()}" for r in refs]
        return FailureList(failures=refs), "\n".join([f"{len(refs)} failure snapshot(s)", *lines])


def error_text(exc: HuddleError | ToolRefused) -> str:
    """The text of a failed tool call: the stable code first, so a model can branch on it."""
    return f"{exc.code}: {exc.message}"
