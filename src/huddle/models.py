"""Pydantic models: events, session documents, checkpoints, failure snapshots, stats.

Input models accept both snake_case and the spec's camelCase (``changeInfo``, ``entityIds``, ``verifiedBy``) so
events written by agents in other languages validate unchanged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .ids import NAME_PATTERN

SCHEMA_VERSION: Final = 1
_NAME_RE = f"^{NAME_PATTERN.pattern}$"  # pydantic searches patterns; anchor them


class EventType:
    """Well-known event types. The set is open: any name matching ``[A-Za-z0-9_.:-]{1,64}`` is accepted."""

    START: Final = "start"
    JOIN: Final = "join"
    LEAVE: Final = "leave"
    MODIFIED: Final = "modified"
    BROKE: Final = "broke"
    FIXED: Final = "fixed"
    TEST_PASS: Final = "test_pass"
    CHECKPOINT: Final = "checkpoint"
    HANDOFF: Final = "handoff"
    COMPLETE: Final = "complete"

    LIFECYCLE: Final = frozenset({START, JOIN, LEAVE, CHECKPOINT, COMPLETE})
    """Types written by huddle itself; ``emit_event`` refuses them."""


def ms_to_datetime(ms: int | str) -> datetime:
    """Server milliseconds since the epoch as an aware UTC datetime."""
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


class _Input(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, str_max_length=4096
    )


class ChangeInfo(_Input):
    """What an event changed."""

    element_type: str = Field(min_length=1, max_length=128)
    entity_ids: list[str] = Field(default_factory=list, max_length=10_000)
    operation: str = Field(min_length=1, max_length=128)
    semantic_hash: str | None = None
    description: str | None = None


class StateTransition(_Input):
    """A change of the session's state; ``from`` must equal the current state or the event is refused."""

    from_state: str = Field(
        alias="from",
        validation_alias=AliasChoices("from", "from_state", "fromState"),
        pattern=_NAME_RE,
    )
    to: str = Field(pattern=_NAME_RE)
    verified_by: str | None = Field(default=None, max_length=256)
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    critical_change: bool | None = None


class Impact(_Input):
    """What the change affects."""

    severity: Literal["low", "medium", "high", "critical"] | None = None
    tests_failed: list[str] = Field(default_factory=list)
    perf_delta: float | None = None
    external_ref: str | None = None
    affected_entities: list[str] = Field(default_factory=list)


_SERVER_ASSIGNED = frozenset({"id", "seq", "timestamp", "actor", "sessionId", "session_id"})


class SessionEvent(_Input):
    """An event as an agent submits it. The server assigns seq, timestamp and actor."""

    type: str = Field(pattern=_NAME_RE)
    change_info: ChangeInfo | None = None
    state_transition: StateTransition | None = None
    impact: Impact | None = None
    data: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_server_fields(cls, value: Any) -> Any:
        # Events serialized by other clients may carry fields the server assigns; they are ignored, not trusted.
        if isinstance(value, dict) and not _SERVER_ASSIGNED.isdisjoint(value):
            return {k: v for k, v in value.items() if k not in _SERVER_ASSIGNED}
        return value

    def payload_json(self) -> str:
        """The stored body (everything but the type), compact JSON."""
        # The serializer itself (what model_dump_json wraps): this runs once per emitted event.
        return self.__pydantic_serializer__.to_json(
            self, by_alias=False, exclude_none=True, exclude={"type"}, round_trip=True
        ).decode()


class _Read(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class Event(_Read):
    """An event as stored: with its sequence number, actor and server timestamp."""

    v: int = SCHEMA_VERSION
    session_id: str
    seq: int
    type: str
    actor: str
    timestamp: datetime
    change_info: ChangeInfo | None = None
    state_transition: StateTransition | None = None
    impact: Impact | None = None
    data: dict[str, Any] | None = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _from_ms(cls, value: Any) -> Any:
        if isinstance(value, int | str) and str(value).isdigit():
            return ms_to_datetime(value)
        return value


class AgentInfo(_Read):
    """A member of a session."""

    agent_id: str
    joined_at: datetime
    last_seen: datetime


class SessionDocument(_Read):
    """The current state of a session."""

    v: int = SCHEMA_VERSION
    session_id: str
    status: Literal["active", "completed"]
    state: str
    creator: str
    created_at: datetime
    updated_at: datetime
    last_seq: int
    first_seq: int = Field(description="oldest sequence number still in the log (older ones were trimmed)")
    version: int
    ttl: int = Field(description="seconds the session lives after activity")
    expires_in: float | None = Field(description="seconds until the session expires, None if it has no TTL")
    metadata: dict[str, Any]
    agents: dict[str, AgentInfo]
    last_checkpoint_id: str | None
    last_checkpoint_seq: int
    broken_since: datetime | None
    in_grace: bool = Field(description="no agents left (or completed): the session expires after grace_ttl")


class Checkpoint(_Read):
    """A durable snapshot of a session's state at one sequence number."""

    v: int = SCHEMA_VERSION
    checkpoint_id: str
    session_id: str
    seq: int
    state: str
    status: str
    agents: list[str]
    metadata: dict[str, Any]
    reason: str
    created_at: datetime
    failure_snapshot_id: str | None = None


class FailureSnapshot(_Read):
    """A copy of a session taken when it entered a failure state; it outlives the session."""

    v: int = SCHEMA_VERSION
    snapshot_id: str
    session_id: str
    seq: int = Field(description="sequence number of the event that entered the failure state")
    created_at: datetime
    state: str
    status: str
    agents: list[str]
    metadata: dict[str, Any]
    events: list[Event]


class FailureSnapshotRef(_Read):
    """An entry of the failure-snapshot index."""

    session_id: str
    snapshot_id: str
    created_at: datetime


class LifecycleNotice(_Read):
    """A notification on the global channel (created, join, leave, complete, checkpoint)."""

    type: str
    session_id: str
    seq: int
    actor: str | None = None
    timestamp: datetime

    @field_validator("timestamp", mode="before")
    @classmethod
    def _from_ms(cls, value: Any) -> Any:
        if isinstance(value, int | str) and str(value).isdigit():
            return ms_to_datetime(value)
        return value


class Distribution(_Read):
    """Summary of measured values (nearest-rank percentiles); all None when there were none."""

    count: int = 0
    min: float | None = None
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    max: float | None = None


class AgentWorkload(_Read):
    """One agent's share of the work: sessions it is a member of, events it wrote (retained logs)."""

    agent_id: str
    sessions: int
    events: int


class AgentPair(_Read):
    """Two agents and how many live sessions they share."""

    agents: tuple[str, str]
    shared_sessions: int


class HandoffCount(_Read):
    """'handoff' events from one agent to another (``to_agent`` from the event's data, if it names one)."""

    from_agent: str
    to_agent: str | None
    count: int


class SessionStats(_Read):
    """Statistics computed from the stored sessions (never estimated).

    Session figures cover live sessions (the activity index); event figures cover the events still in their
    logs (``events_scanned``; older ones were trimmed at ``max_events_per_session``)."""

    active_sessions: int
    total_events: int
    average_events_per_session: float
    sessions_by_state: dict[str, int]
    sessions_in_grace: int
    distinct_agents: int
    average_agents_per_session: float
    failure_snapshots: int
    computed_at: datetime
    sessions_created_last_hour: int = 0
    sessions_created_last_day: int = 0
    creation_rate_per_hour: float = 0.0  # live sessions created in the last 24 h, per hour
    session_age_seconds: Distribution = Distribution()
    session_active_seconds: Distribution = Distribution()  # last activity - creation
    events_per_session: Distribution = Distribution()
    events_per_minute: Distribution = Distribution()  # per session, over its active time
    broken_sessions: int = 0
    sessions_per_agent: Distribution = Distribution()
    agent_workload: list[AgentWorkload] = Field(default_factory=list)  # busiest agents first
    collaboration_pairs: list[AgentPair] = Field(default_factory=list)  # most shared sessions first
    events_scanned: int = 0
    event_types: dict[str, int] = Field(default_factory=dict)
    events_per_agent: Distribution = Distribution()
    actor_switches: int = 0  # consecutive work events written by different agents
    handoff_count: int = 0
    handoffs: list[HandoffCount] = Field(default_factory=list)
    time_to_fix_seconds: Distribution = Distribution()  # from 'broke' to 'fixed'


class HealthStatus(_Read):
    """Result of ``SessionManager.health_check``."""

    status: Literal["healthy", "warning", "critical", "down"]
    redis_reachable: bool
    latency_ms: float | None
    redis_version: str | None
    used_memory_bytes: int | None
    scripts_loaded: bool
    active_sessions: int | None
    problems: list[str]
    checked_at: datetime


class MaintenanceReport(_Read):
    """What ``perform_maintenance`` found and repaired."""

    scanned_index_entries: int
    removed_active_entries: int
    removed_failure_entries: int
    removed_agent_entries: int
    duration_ms: float
