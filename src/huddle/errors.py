"""Huddle's exceptions: one hierarchy, each class with a stable ``code``."""

from __future__ import annotations

from typing import Any


class HuddleError(Exception):
    """Base class of every error huddle raises."""

    code: str = "huddle_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description (code, message, details)."""
        return {"code": self.code, "message": self.message, "details": self.details}


class ConfigError(HuddleError):
    """Settings are invalid (wrong type, out of range, unknown key)."""

    code = "invalid_config"


class InvalidIdentifierError(HuddleError, ValueError):
    """A session, agent or other id does not match the allowed pattern."""

    code = "invalid_identifier"


class InvalidEventError(HuddleError, ValueError):
    """An event payload is malformed or too large."""

    code = "invalid_event"


class SessionNotFoundError(HuddleError, LookupError):
    """No session with this id exists."""

    code = "session_not_found"


class SessionExpiredError(SessionNotFoundError):
    """The session existed but its TTL ran out."""

    code = "session_expired"


class SessionExistsError(HuddleError):
    """A session with this id already exists."""

    code = "session_exists"


class CorruptSessionDataError(HuddleError):
    """Stored session data is unreadable (a field holds garbage, a key has the wrong type); nothing was written.

    ``details``: ``key`` (the Redis key) and ``field`` (the hash field / stream entry field) when known."""

    code = "corrupt_session_data"


class ConflictError(HuddleError):
    """An optimistic-concurrency precondition failed; nothing was written."""

    code = "conflict"


class StateConflictError(ConflictError):
    """A state transition's ``from`` is not the session's current state."""

    code = "state_conflict"


class SequenceConflictError(ConflictError):
    """``expected_seq`` did not match the session's last sequence number."""

    code = "sequence_conflict"


class NotAMemberError(HuddleError):
    """The actor has not joined the session."""

    code = "not_a_member"


class SessionCompletedError(HuddleError):
    """The session is completed and accepts no more events."""

    code = "session_completed"


class EventsTrimmedError(HuddleError):
    """Requested events were trimmed from the log (``max_events_per_session``)."""

    code = "events_trimmed"


class EventsRolledBackError(HuddleError):
    """Events a subscription delivered were replaced after a Redis failover lost them (asynchronous replication).

    ``first_changed_seq`` is the first delivered seq whose stored event differs (or is gone); resubscribe from it."""

    code = "events_rolled_back"


class CheckpointNotFoundError(HuddleError, LookupError):
    """No checkpoint with this id exists for the session."""

    code = "checkpoint_not_found"


class RedisUnavailableError(HuddleError):
    """Redis could not be reached after bounded retries."""

    code = "redis_unavailable"


class RedisPermissionError(HuddleError):
    """The Redis ACL user may not run a command or touch a key huddle needs (NOPERM), or cannot log in."""

    code = "redis_permission_denied"


class ReplicationNotConfirmedError(HuddleError):
    """The write succeeded on the master but fewer replicas than ``min_replicas`` confirmed it in time.

    The event exists (``details['seq']``) but could be lost if the master fails now; retrying with the same
    idempotency key returns the same seq and waits again."""

    code = "replication_not_confirmed"


class ShuttingDownError(HuddleError):
    """The owning object is shutting down (or closed) and refuses new work."""

    code = "shutting_down"


class ShutdownError(HuddleError):
    """A graceful shutdown was used wrongly (e.g. initialized twice or after it started)."""

    code = "shutdown_error"


class RecoveryDataError(HuddleError):
    """The stored recovery document is unreadable or of an unknown version."""

    code = "invalid_recovery_data"


class EmbeddedRedisError(HuddleError):
    """The embedded redis-server could not be found or started."""

    code = "embedded_redis"


class MigrationError(HuddleError):
    """A session migration or cross-instance sync could not do what was asked."""

    code = "migration_error"


class InvalidMigrationRequestError(MigrationError, ValueError):
    """A migration or sync request is malformed (bad timestamp, unknown instance, bad mode)."""

    code = "invalid_migration_request"


class MigrationTaskNotFoundError(MigrationError, LookupError):
    """No migration task with this id is recorded on the target."""

    code = "migration_task_not_found"


class MigrationTaskBusyError(MigrationError):
    """The migration task is being run by a live process (its lease has not expired)."""

    code = "migration_task_busy"


class MigrationStateError(MigrationError):
    """The migration task is in a state that does not allow this (e.g. resuming a completed task)."""

    code = "migration_state"


class SyncError(MigrationError):
    """A cross-instance sync could not apply the source's changes to the target."""

    code = "sync_failed"


class SyncSourceGoneError(SyncError, LookupError):
    """The session to sync does not exist on the source (any more); its sync link ends."""

    code = "sync_source_gone"


class ReplayError(HuddleError):
    """A recording or replay operation is not possible (e.g. the session is already being recorded)."""

    code = "replay_error"


class ReplayNotFoundError(ReplayError, LookupError):
    """No recording with this id exists (never did, deleted or past its retention)."""

    code = "replay_not_found"


class ReplayIntegrityError(ReplayError):
    """A recording failed verification: a frame was altered, lost or reordered."""

    code = "replay_integrity"


class InvalidReplayOptionsError(ReplayError, ValueError):
    """Replay options or an import file are malformed."""

    code = "invalid_replay_options"


__all__ = [
    "CheckpointNotFoundError",
    "ConfigError",
    "ConflictError",
    "CorruptSessionDataError",
    "EmbeddedRedisError",
    "EventsTrimmedError",
    "HuddleError",
    "InvalidEventError",
    "InvalidIdentifierError",
    "InvalidMigrationRequestError",
    "InvalidReplayOptionsError",
    "MigrationError",
    "MigrationStateError",
    "MigrationTaskBusyError",
    "MigrationTaskNotFoundError",
    "NotAMemberError",
    "RecoveryDataError",
    "RedisPermissionError",
    "RedisUnavailableError",
    "ReplayError",
    "ReplayIntegrityError",
    "ReplayNotFoundError",
    "ReplicationNotConfirmedError",
    "SequenceConflictError",
    "SessionCompletedError",
    "SessionExistsError",
    "SessionExpiredError",
    "SessionNotFoundError",
    "ShutdownError",
    "ShuttingDownError",
    "StateConflictError",
    "SyncError",
    "SyncSourceGoneError",
]
