"""What recordings are made of: the session state after an event, frames, settings, reports.

Frames and states are slotted dataclasses, not pydantic models: playback builds one per recorded event and
must stay fast (tens of thousands per second). Settings and reports are pydantic, validated once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config import config_error_from
from ..errors import InvalidReplayOptionsError
from ..ids import ID_PATTERN, NAME_PATTERN
from ..models import Event, ms_to_datetime


@dataclass(frozen=True, slots=True)
class ReplayState:
    """The session as it was right after one event: what a recording reproduces frame by frame."""

    seq: int
    status: str
    state: str
    agents: tuple[str, ...]
    checkpoint_id: str | None
    metadata_json: str = "{}"
    """Canonical JSON (sorted keys) of the session metadata."""

    @property
    def metadata(self) -> dict[str, Any]:
        """The session metadata."""
        value: dict[str, Any] = json.loads(self.metadata_json)
        return value

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy."""
        return {
            "seq": self.seq,
            "status": self.status,
            "state": self.state,
            "agents": list(self.agents),
            "checkpoint_id": self.checkpoint_id,
            "metadata": self.metadata,
        }


EMPTY_STATE = ReplayState(seq=0, status="", state="", agents=(), checkpoint_id=None)
"""The state before a session's first event."""


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as the session's stream stored it (type, actor, server time, body)."""

    seq: int
    type: str
    actor: str
    at_ms: int
    body: dict[str, Any] = field(default_factory=dict)

    def to_event(self, session_id: str) -> Event:
        """The event as the manager's ``Event`` model."""
        return Event.model_validate(
            {**self.body, "session_id": session_id, "seq": self.seq, "type": self.type,
             "actor": self.actor, "timestamp": self.at_ms}
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReplayFrame:
    """One recorded event and the session state right after it."""

    index: int
    """Position in the recording (0 = first recorded event)."""
    event: RecordedEvent
    state: ReplayState
    checksum: str
    """Checksum of ``state`` as recorded (already compared when state validation is on)."""

    @property
    def seq(self) -> int:
        """Sequence number of the event."""
        return self.event.seq

    @property
    def at_ms(self) -> int:
        """Server time of the event (ms since the epoch)."""
        return self.event.at_ms

    @property
    def at(self) -> datetime:
        """Server time of the event."""
        return ms_to_datetime(self.event.at_ms)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise self._error(exc) from None

    @classmethod
    def _error(cls, exc: ValidationError) -> Exception:
        return config_error_from(exc, cls.__name__)


class ReplayConfig(_Frozen):
    """How recordings are made and kept (the spec's ``ReplayConfig``, plus snapshot and retention knobs)."""

    compression_enabled: bool = True
    compression_level: int = Field(default=3, ge=1, le=22, description="zstd level")
    snapshot_interval: int = Field(default=300, ge=1, le=86_400, description="seconds between full snapshots")
    snapshot_every_frames: int = Field(
        default=128, ge=1, le=10_000, description="a full snapshot at least every N frames (bounds seeking)"
    )
    max_replay_duration: int = Field(
        default=86_400, ge=1, description="seconds a recording may last; it stops by itself after that"
    )
    enable_state_validation: bool = True
    enable_delta_compression: bool = True
    retention_days: float = Field(default=30.0, gt=0, le=3650, description="recordings expire after this")
    hold_lease_seconds: int = Field(
        default=30, ge=2, le=3600, description="how long an unread-events hold lasts without renewal"
    )
    read_batch: int = Field(default=500, ge=1, le=10_000, description="events read per XREAD")
    block_ms: int = Field(default=1000, ge=10, le=60_000, description="XREAD BLOCK while following")
    flush_interval_ms: int = Field(
        default=100, ge=0, le=10_000, description="frames are written to Redis at most this often (batched)"
    )
    poll_ms: int = Field(
        default=20, ge=0, le=1000, description="pause after a partial read so events batch up (0 = none)"
    )


class ReplayOptions(_Frozen):
    """How to play a recording: speed and filters (time range, agents, event types, seq range)."""

    speed: float | None = Field(default=1.0, ge=0, description="1 = recorded timing; 0 or None = no pauses")
    event_types: tuple[str, ...] | None = None
    agents: tuple[str, ...] | None = None
    from_seq: int | None = Field(default=None, ge=0)
    to_seq: int | None = Field(default=None, ge=0)
    start_time: datetime | None = None
    end_time: datetime | None = None
    validate_state: bool | None = Field(
        default=None, description="check every frame's checksum and the hash chain (None = the config's)"
    )

    @classmethod
    def _error(cls, exc: ValidationError) -> Exception:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in exc.errors()]
        return InvalidReplayOptionsError("invalid replay options: " + "; ".join(problems), problems=problems)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.from_seq is not None and self.to_seq is not None and self.to_seq < self.from_seq:
            raise ValueError(f"to_seq {self.to_seq} is before from_seq {self.from_seq}")
        if self.start_time is not None and self.end_time is not None and self.end_time < self.start_time:
            raise ValueError("end_time is before start_time")
        for name in self.event_types or ():
            if NAME_PATTERN.fullmatch(name) is None:
                raise ValueError(f"{name!r} is not a valid event type")
        for name in self.agents or ():
            if ID_PATTERN.fullmatch(name) is None:
                raise ValueError(f"{name!r} is not a valid agent id")
        return self

    @property
    def paced(self) -> bool:
        """True when playback waits between frames."""
        return bool(self.speed)


class ReplayInfo(BaseModel):
    """A recording's description (stored in its meta hash)."""

    model_config = ConfigDict(frozen=True)

    replay_id: str
    session_id: str
    status: Literal["recording", "complete"]
    stop_reason: str | None
    started_at: datetime
    ended_at: datetime | None
    first_seq: int
    last_seq: int
    frames: int
    segments: int
    first_event_at: datetime | None
    last_event_at: datetime | None
    raw_bytes: int = Field(description="bytes a full state per frame would take (measured while recording)")
    stored_bytes: int = Field(description="bytes of frame blocks actually stored in Redis")
    compression: bool
    delta: bool
    initial_state: dict[str, Any]
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def duration_seconds(self) -> float:
        """Time between the first and last recorded event."""
        if self.first_event_at is None or self.last_event_at is None:
            return 0.0
        return (self.last_event_at - self.first_event_at).total_seconds()


class ReplayStats(BaseModel):
    """Totals over every stored recording (measured from their meta hashes)."""

    model_config = ConfigDict(frozen=True)

    total_replays: int
    recording: int
    total_frames: int
    raw_bytes: int
    stored_bytes: int
    storage_reduction: float = Field(description="1 - stored/raw (0.9 = 90% smaller than full states)")
    oldest: datetime | None
    newest: datetime | None


class VerifyReport(BaseModel):
    """Result of ``verify_replay``: ok, or the first bad frame and why."""

    model_config = ConfigDict(frozen=True)

    replay_id: str
    ok: bool
    frames_checked: int
    first_bad_frame: int | None = None
    reason: str | None = None
