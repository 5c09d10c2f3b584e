"""Request and response bodies of the HTTP API (the library's own models are used wherever they fit)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..ids import ID_PATTERN, NAME_PATTERN
from ..models import Checkpoint, Event, FailureSnapshotRef, SessionEvent
from ..replay.models import ReplayInfo

ID_RE = f"^{ID_PATTERN.pattern}$"
NAME_RE = f"^{NAME_PATTERN.pattern}$"
MAX_BATCH = 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateSessionBody(_Body):
    """``POST /v1/sessions``."""

    agent_id: str = Field(pattern=ID_RE, description="the creator and first member")
    session_id: str | None = Field(default=None, pattern=ID_RE)
    metadata: dict[str, Any] | None = None
    ttl: int | None = Field(
        default=None, ge=1, le=30 * 86400, description="seconds the session lives after activity"
    )
    initial_state: str | None = Field(default=None, pattern=NAME_RE)
    record: bool = Field(default=False, description="record the session from its first event")


class JoinBody(_Body):
    """``POST /v1/sessions/{id}/members``."""

    agent_id: str = Field(pattern=ID_RE)


class ActorBody(_Body):
    """An optional actor (an agent token's own agent id when left out)."""

    actor: str | None = Field(default=None, pattern=ID_RE)


class CheckpointBody(_Body):
    """``POST /v1/sessions/{id}/checkpoints``."""

    actor: str | None = Field(default=None, pattern=ID_RE)
    reason: str = Field(default="manual", pattern=NAME_RE)
    force_snapshot: bool = False


_SERVER_ASSIGNED = frozenset({"id", "seq", "timestamp", "sessionId", "session_id"})


class EventSubmission(SessionEvent):
    """An event in the spec's shape (snake_case or camelCase) plus the ``actor`` writing it."""

    actor: str = Field(pattern=ID_RE)

    @model_validator(mode="before")
    @classmethod
    def _drop_server_fields(cls, value: Any) -> Any:
        # Same rule as the library's event, except that here the caller names the actor (checked by the route).
        if isinstance(value, dict) and not _SERVER_ASSIGNED.isdisjoint(value):
            return {k: v for k, v in value.items() if k not in _SERVER_ASSIGNED}
        return value

    def to_event(self) -> SessionEvent:
        """The library's event (without the actor)."""
        return SessionEvent(
            type=self.type,
            change_info=self.change_info,
            state_transition=self.state_transition,
            impact=self.impact,
            data=self.data,
        )


class Emitted(BaseModel):
    """One event appended."""

    seq: int


class EmittedBatch(BaseModel):
    """A list of events appended atomically, in order."""

    seqs: list[int]


class EventPage(BaseModel):
    """A page of a session's log; ``next_from_seq`` is null at the end."""

    events: list[Event] = Field(
        description="events as get_events returns them (seq, type, actor, timestamp, ...)"
    )
    next_from_seq: int | None


class SessionSummary(BaseModel):
    """A session in a listing."""

    session_id: str
    status: str
    state: str
    creator: str
    agents: list[str]
    last_seq: int
    created_at: datetime
    updated_at: datetime
    broken_since: datetime | None
    in_grace: bool


class SessionPage(BaseModel):
    """A page of live sessions, most recently active first; pass ``next_cursor`` as ``cursor`` for more."""

    sessions: list[SessionSummary]
    next_cursor: str | None


class Membership(BaseModel):
    """Result of a join or leave."""

    session_id: str
    agent_id: str
    changed: bool = Field(description="false if the agent already was (join) or was not (leave) a member")


class Completed(BaseModel):
    """Result of completing a session."""

    session_id: str
    seq: int


class CheckpointList(BaseModel):
    """A session's checkpoints, newest first."""

    checkpoints: list[Checkpoint]


class FailureSnapshotList(BaseModel):
    """Failure snapshots of all sessions, newest first."""

    snapshots: list[FailureSnapshotRef]


class RecordingBody(_Body):
    """``POST /v1/sessions/{id}/recording``."""

    from_start: bool = Field(default=False, description="record from seq 1 instead of from now")


class Recording(BaseModel):
    """A recording started or stopped."""

    session_id: str
    replay_id: str


class ReplayList(BaseModel):
    """Recordings newest first."""

    replays: list[ReplayInfo]
    next_offset: int | None


class FramePage(BaseModel):
    """A page of a recording's frames: each with index, seq, at, event and the reconstructed state."""

    frames: list[dict[str, Any]]
    next_from_index: int | None
