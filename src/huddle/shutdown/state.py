"""The mutable bookkeeping of one running shutdown; ``snapshot()`` turns it into a frozen ShutdownStatus."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .config import ShutdownOptions
from .models import RecoveryRecording, RecoverySession, RecoveryTask, ShutdownPhase, ShutdownStatus


@dataclass
class ShutdownState:
    """Progress of one shutdown."""

    options: ShutdownOptions
    signal_name: str | None
    deadline: float
    """``time.monotonic()`` at which the grace period ends."""
    phase: ShutdownPhase = ShutdownPhase.INITIATED
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    phase_started: float = field(default_factory=time.monotonic)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    in_flight_at_drain: int = 0
    sessions: list[RecoverySession] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    recordings: list[RecoveryRecording] = field(default_factory=list)
    tasks: list[RecoveryTask] = field(default_factory=list)
    recovery_written: bool = False
    errors: list[str] = field(default_factory=list)
    forced_reason: str | None = None

    def remaining(self) -> float:
        """Seconds left in the grace period (never negative)."""
        return max(0.0, self.deadline - time.monotonic())

    def enter(self, phase: ShutdownPhase) -> None:
        """Close the timing of the current phase and move to ``phase``."""
        now = time.monotonic()
        self.phase_seconds[self.phase.value] = round(now - self.phase_started, 6)
        self.phase, self.phase_started = phase, now

    @property
    def sessions_checkpointed(self) -> int:
        """Sessions whose shutdown checkpoint succeeded."""
        return sum(1 for session in self.sessions if session.checkpoint_id is not None)

    @property
    def sessions_failed(self) -> int:
        """Sessions whose shutdown checkpoint failed (not counting sessions that were already gone)."""
        return sum(1 for session in self.sessions if session.checkpoint_id is None)

    def snapshot(self) -> ShutdownStatus:
        """A frozen copy for callers."""
        return ShutdownStatus(
            phase=self.phase,
            reason=self.options.reason,
            signal=self.signal_name,
            graceful=self.options.graceful,
            preserve_data=self.options.preserve_data,
            started_at=self.started_at,
            finished_at=self.finished_at,
            phase_seconds=dict(self.phase_seconds),
            in_flight_at_drain=self.in_flight_at_drain,
            sessions_checkpointed=self.sessions_checkpointed,
            sessions_failed=self.sessions_failed,
            recordings_preserved=sum(1 for r in self.recordings if r.status != "failed"),
            tasks_preserved=len(self.tasks),
            recovery_written=self.recovery_written,
            errors=list(self.errors),
            forced_reason=self.forced_reason,
        )
