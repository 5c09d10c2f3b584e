"""Pydantic models of migration tasks, conflicts, validation reports and cross-instance syncs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TaskKind = Literal["full", "incremental", "selective"]
TaskStatus = Literal["pending", "running", "cancelling", "cancelled", "completed", "failed", "rolled_back"]
SyncMode = Literal["real-time", "periodic", "manual"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class MigrationProgress(_Frozen):
    """Counters of a task (persisted, so they survive the process)."""

    total_sessions: int = Field(
        description="sessions found to migrate (counted at start; grows if more appear)"
    )
    processed_sessions: int = Field(description="sessions handled so far, whatever the outcome")
    migrated_sessions: int = Field(description="sessions written to the target")
    unchanged_sessions: int = Field(description="already identical on the target")
    kept_sessions: int = Field(description="the target's copy was kept by the conflict policy")
    failed_sessions: int = Field(description="not written: refused by policy 'fail', diverged, or an error")
    unknown_sessions: int = Field(description="requested ids that do not exist on the source (or expired)")
    conflicts: int = Field(description="sessions that existed on both sides with different content")
    migrated_events: int = Field(description="events written to the target")


class SideValues(_Frozen):
    """One side's values of a conflicting session."""

    seq: int | None
    version: int | None
    updated_at: datetime | None
    state: str | None
    status: str | None


class ConflictRecord(_Frozen):
    """A session that existed on both sides with different content, and what the policy did."""

    session_id: str
    policy: str
    resolution: Literal["source", "target", "refused", "diverged"]
    detail: str = ""
    source: SideValues
    target: SideValues
    at: datetime


class MigrationErrorRecord(_Frozen):
    """A session (or the task) that failed, with the typed error code."""

    session_id: str | None
    code: str
    message: str
    at: datetime


class MigrationTask(_Frozen):
    """A migration task as persisted on the target: options, status, progress, cursor, recent problems."""

    task_id: str
    kind: TaskKind
    status: TaskStatus
    source: str = Field(description="source URL, password masked")
    target: str = Field(description="target URL, password masked")
    namespace: str
    target_namespace: str
    conflict_policy: str
    since: datetime | None
    session_ids_count: int
    validate_after: bool
    backup_first: bool
    batch_size: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: MigrationProgress
    cursor: dict[str, Any]
    error: str | None
    recent_conflicts: list[ConflictRecord] = Field(description="the latest conflicts (all: get_conflicts)")
    recent_errors: list[MigrationErrorRecord] = Field(description="the latest errors (all: get_errors)")
    validation: ValidationReport | None = None

    @property
    def done(self) -> bool:
        """True once the task will not move by itself any more."""
        return self.status in ("cancelled", "completed", "failed", "rolled_back")


class SessionDigest(_Frozen):
    """What validation compares for one session, computed by the server holding it."""

    status: str
    state: str
    last_seq: int
    first_seq: int
    metadata_sha1: str
    agents: list[str]
    event_count: int
    events_sha1: str
    checkpoint_count: int
    checkpoints_sha1: str
    idempotency_keys: int


class SessionMismatch(_Frozen):
    """A session that is not the same on both sides."""

    session_id: str
    problem: Literal["missing_on_target", "missing_on_source", "different"]
    fields: list[str] = Field(default_factory=list, description="digest fields that differ")
    source: SessionDigest | None = None
    target: SessionDigest | None = None


class ValidationReport(_Frozen):
    """Result of comparing session digests on both sides."""

    task_id: str | None
    total_checked: int
    passed: int
    failed: int
    mismatches: list[SessionMismatch] = Field(description="at most 1000; ``failed`` counts them all")
    duration_ms: float
    checked_at: datetime

    @property
    def ok(self) -> bool:
        """True if every checked session is identical on both sides."""
        return self.failed == 0


class RollbackReport(_Frozen):
    """What ``rollback`` undid."""

    task_id: str
    removed_sessions: int
    restored_sessions: int
    untouched_sessions: int


class CrossInstanceSession(_Frozen):
    """A session kept in sync with another Redis instance."""

    session_id: str
    target_instance: str
    sync_mode: SyncMode
    status: Literal["syncing", "idle", "retrying", "stopped", "source_gone", "failed"]
    last_synced_seq: int
    last_sync_at: datetime | None
    syncs: int
    events_applied: int
    full_copies: int
    errors: int
    last_error: str | None
    target: str | None = Field(default=None, description="the target's URL, password masked")
    owner: str | None = Field(default=None, description="the process running the link (host:pid:token)")
    heartbeat_at: datetime | None = Field(
        default=None, description="when the owner last wrote this status to the source"
    )


MigrationTask.model_rebuild()
