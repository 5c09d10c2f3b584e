"""Structured results of the MCP tools (each tool publishes its model as its output schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from ...models import Event, FailureSnapshotRef


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class SessionCreated(_Result):
    """Reply of ``create_session``."""

    session_id: str = Field(description="id of the new session; you are its first member")


class SessionJoined(_Result):
    """Reply of ``join_session``."""

    session_id: str
    joined: bool = Field(description="false if you already were a member")
    last_seq: int = Field(description="last event seq right after joining: wait for events after it")
    state: str = Field(description="the session's current state")


class SessionLeft(_Result):
    """Reply of ``leave_session``."""

    session_id: str
    left: bool = Field(description="false if you were not a member")


class SessionSummary(_Result):
    """One line of ``list_sessions``."""

    session_id: str
    state: str
    status: str
    agents: list[str]
    last_seq: int
    updated_at: datetime


class SessionList(_Result):
    """Reply of ``list_sessions``: one page, most recently active first."""

    sessions: list[SessionSummary]
    next_offset: int | None = Field(
        description="pass as offset for the next page; null when this is the last"
    )


class Appended(_Result):
    """Reply of ``post_event``, ``handoff`` and ``complete_session``."""

    seq: int = Field(description="sequence number of the event written")


class ChangeOut(_Result):
    """What an event changed."""

    element_type: str
    operation: str
    entity_ids: list[str] = Field(default_factory=list)
    description: str | None = None
    semantic_hash: str | None = None


class TransitionOut(_Result):
    """The state change an event made."""

    from_state: str
    to: str
    confidence: float | None = None
    verified_by: str | None = None
    critical_change: bool | None = None


class EventOut(_Result):
    """A stored event (snake_case throughout; absent parts are left out)."""

    seq: int
    type: str
    actor: str
    timestamp: datetime
    change_info: ChangeOut | None = None
    state_transition: TransitionOut | None = None
    impact: dict[str, Any] | None = None
    data: dict[str, Any] | None = None

    @classmethod
    def of(cls, event: Event) -> Self:
        """The reply form of a stored event."""
        parts: dict[str, Any] = {}
        if event.change_info is not None:
            parts["change_info"] = ChangeOut(
                **event.change_info.model_dump(by_alias=False, exclude_none=True)
            )
        if event.state_transition is not None:
            move = event.state_transition.model_dump(by_alias=False, exclude_none=True)
            parts["state_transition"] = TransitionOut(**move)
        if event.impact is not None:
            parts["impact"] = event.impact.model_dump(exclude_none=True)
        if event.data is not None:
            parts["data"] = event.data
        return cls(seq=event.seq, type=event.type, actor=event.actor, timestamp=event.timestamp, **parts)


class EventPage(_Result):
    """Reply of ``read_events`` and ``wait_for_events``."""

    events: list[EventOut] = Field(description="events in seq order (at most the requested limit)")
    last_seq: int = Field(description="highest seq this call looked at: pass it as after_seq next time")
    has_more: bool = Field(default=False, description="more events after last_seq are already stored")
    timed_out: bool = Field(
        default=False,
        description="wait_for_events: nothing new arrived in time (false with no events: the session ended)",
    )


class CheckpointTaken(_Result):
    """Reply of ``checkpoint``."""

    checkpoint_id: str


class FailureList(_Result):
    """Reply of ``list_failures``: failure snapshots, newest first."""

    failures: list[FailureSnapshotRef]


class ToolErrorBody(_Result):
    """What a failed tool call carries in its structured content (``is_error`` is set)."""

    code: str = Field(description="stable HuddleError code, e.g. session_not_found, not_a_member")
    message: str
