"""What a shutdown reports: its phase and progress, the events it emits, and the recovery document."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

RECOVERY_VERSION = 1


class ShutdownPhase(StrEnum):
    """Phases in the order a graceful shutdown passes them; ``forced`` replaces the rest after a timeout."""

    INITIATED = "initiated"
    DRAINING = "draining"
    CHECKPOINTING = "checkpointing"
    CLEANUP = "cleanup"
    COMPLETE = "complete"
    FORCED = "forced"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ShutdownEvent(_Frozen):
    """One progress report: a phase started or ended, a step finished, or something failed."""

    kind: Literal["phase", "progress", "error"]
    phase: ShutdownPhase
    message: str
    at: datetime
    details: dict[str, Any] = Field(default_factory=dict)


class ShutdownStatus(_Frozen):
    """Where a shutdown stands (a snapshot; ask again for fresh values)."""

    phase: ShutdownPhase
    reason: str
    signal: str | None = Field(description="name of the signal that started it, None when called directly")
    graceful: bool
    preserve_data: bool
    started_at: datetime
    finished_at: datetime | None
    phase_seconds: dict[str, float] = Field(description="time spent in each phase that has ended")
    in_flight_at_drain: int = Field(description="operations still running when draining started")
    sessions_checkpointed: int
    sessions_failed: int
    recordings_preserved: int
    tasks_preserved: int
    recovery_written: bool
    errors: list[str]
    forced_reason: str | None

    @property
    def done(self) -> bool:
        """True once the shutdown reached ``complete`` or ``forced``."""
        return self.phase in (ShutdownPhase.COMPLETE, ShutdownPhase.FORCED)

    @property
    def exit_code(self) -> int:
        """What a process should exit with: 0 clean, 2 complete with errors, 1 forced, 3 still running."""
        if self.phase is ShutdownPhase.FORCED:
            return 1
        if self.phase is not ShutdownPhase.COMPLETE:
            return 3
        return 2 if self.errors else 0


class RecoverySession(_Frozen):
    """A session this process was active in, and the checkpoint taken of it at shutdown."""

    session_id: str
    agents: list[str]
    checkpoint_id: str | None = Field(description="None when the checkpoint failed (see error)")
    checkpoint_seq: int | None = None
    error: str | None = None


class RecoveryRecording(_Frozen):
    """A recording that was running: stopped and kept (``stopped``) or left ready to continue (``resumable``)."""

    session_id: str
    replay_id: str | None = None
    status: Literal["stopped", "resumable", "failed"]
    error: str | None = None


class RecoveryTask(_Frozen):
    """A migration or sync stopped at a cursor it can resume from."""

    kind: Literal["migration", "sync"]
    task_id: str
    cursor: Any = None
    details: dict[str, Any] = Field(default_factory=dict)


class RecoveryData(_Frozen):
    """The versioned document a shutdown leaves in Redis for the next start of the same instance."""

    v: int = RECOVERY_VERSION
    instance_id: str
    namespace: str
    reason: str
    phase: ShutdownPhase
    graceful: bool
    started_at: datetime
    written_at: datetime
    sessions: list[RecoverySession]
    recordings: list[RecoveryRecording]
    tasks: list[RecoveryTask]
    errors: list[str]

    @property
    def checkpoint_ids(self) -> dict[str, str]:
        """Session id -> checkpoint id taken at shutdown (sessions whose checkpoint succeeded)."""
        return {s.session_id: s.checkpoint_id for s in self.sessions if s.checkpoint_id is not None}


class ResumeReport(_Frozen):
    """What ``SessionGracefulShutdown.resume()`` restored from the recovery data."""

    sessions_adopted: list[str]
    sessions_gone: list[str]
    recordings_resumed: list[str]
    tasks_resumed: list[str]
    errors: list[str]
