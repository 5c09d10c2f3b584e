"""SessionManager: session lifecycle, events, checkpoints, subscriptions and maintenance."""

from __future__ import annotations

import asyncio
import base64
import functools
import itertools
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self

from ..backend.connection import RedisClient, create_client
from ..config import SessionManagerConfig
from ..errors import (
    CheckpointNotFoundError,
    InvalidEventError,
    ReplayError,
    SessionNotFoundError,
)
from ..ids import check_id, check_name, new_session_id
from ..models import (
    Checkpoint,
    Event,
    FailureSnapshot,
    FailureSnapshotRef,
    HealthStatus,
    LifecycleNotice,
    MaintenanceReport,
    SessionDocument,
    SessionStats,
)
from . import analytics, maintenance, subscription
from .checks import (
    check_callable,
    check_int,
    check_optional_int,
    check_snapshot_id,
    checkpoint_seq,
)
from .keys import KeySpace
from .manager_emit import EmitMethods, OperationObserver, tracked_in_flight
from .members import LocalMembers
from .store import SessionStore

log = logging.getLogger("huddle.core.manager")

MAX_TTL = 30 * 86400
"""Longest lifetime (seconds) a caller may give a session (``ttl``, ``grace_ttl``)."""
SYSTEM_ACTOR = "huddle"
"""Actor recorded on events huddle writes itself (manual checkpoints without an actor, shutdown)."""


class SessionManager(EmitMethods):
    """Creates sessions, appends their events atomically, checkpoints, follows and maintains them."""

    def __init__(
        self, config: SessionManagerConfig | None = None, *, client: RedisClient | None = None
    ) -> None:
        self.config = config if config is not None else SessionManagerConfig()
        cfg = self.config
        self.keys = KeySpace(cfg.namespace, cfg.index_shards, cfg.global_channel, cfg.session_channel_prefix)
        # emit_event is the hot path: build a session's key names once, not per event (bounded LRU).
        self._session_keys = functools.lru_cache(maxsize=1024)(self.keys.session)
        self._emit_keys = functools.lru_cache(maxsize=1024)(self._build_emit_keys)
        self._valid_ids: set[str] = set()
        """Ids that passed ``check_id`` (bounded): agents and sessions repeat on every event."""
        # Retry tokens only have to be unique: a random prefix per manager and a counter, no syscall per event.
        # 64 random bits in 11 characters: each token is an entry of the session's tokens set while its event is
        # in the log, so its length is memory per stored event.
        self._token_prefix = base64.urlsafe_b64encode(os.urandom(8)).rstrip(b"=").decode()
        self._token_counter = itertools.count()
        self._owns_client = client is None
        self.client: RedisClient = client if client is not None else create_client(cfg)
        self.store = SessionStore(self.client, self.keys)
        self._failure_csv = ",".join(cfg.failure_states)
        self._failure_ttl_ms = str(cfg.failure_snapshot_ttl * 1000) if cfg.enable_failure_snapshots else ""
        self._observers: list[OperationObserver] = []
        self._recorder: Callable[[str], Awaitable[Any]] | None = None
        self._closed = False
        self._draining = False
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self.local_members = LocalMembers(cfg.max_local_sessions)
        """Sessions (and agents) joined through this manager, e.g. for checkpointing at shutdown (bounded)."""

    @classmethod
    def from_env(cls) -> Self:
        """A manager configured from ``HUDDLE_*`` environment variables."""
        return cls(SessionManagerConfig())

    # -- lifecycle of the manager itself --------------------------------------------------------------------
    async def connect(self) -> Self:
        """Check that Redis answers and load the scripts (optional: calls load them on demand)."""
        await self.store.load()
        return self

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop subscriptions and release connections (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self.client.aclose()

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return self._closed

    def begin_draining(self) -> None:
        """Refuse new sessions and events with ``ShuttingDownError`` from now on (checkpoints still work)."""
        self._draining = True

    @property
    def draining(self) -> bool:
        """True once ``begin_draining()`` was called."""
        return self._draining

    @property
    def in_flight(self) -> int:
        """Mutations (create, join, emit, leave, complete, checkpoint) started and not yet finished."""
        return self._in_flight

    async def wait_idle(self) -> None:
        """Return once no mutation is in flight (bound it with ``asyncio.timeout``)."""
        if self._idle is None:
            self._idle = asyncio.Event()
        while self._in_flight:
            self._idle.clear()
            await self._idle.wait()

    def attach_recorder(self, recorder: Callable[[str], Awaitable[Any]]) -> None:
        """Used by ``SessionReplay``: ``create_session(..., record=True)`` calls ``recorder(session_id)``."""
        self._recorder = check_callable(recorder, "recorder")

    def detach_recorder(self, recorder: Callable[[str], Awaitable[Any]]) -> None:
        """Undo ``attach_recorder`` (if ``recorder`` is still the attached one)."""
        if self._recorder == recorder:
            self._recorder = None

    def add_operation_observer(self, observer: OperationObserver) -> None:
        """Call ``observer(operation, seconds, ok)`` after every operation (metrics hook)."""
        self._observers.append(check_callable(observer, "observer"))

    # -- sessions -------------------------------------------------------------------------------------------
    @tracked_in_flight
    async def create_session(
        self,
        agent_id: str,
        *,
        session_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        ttl: int | None = None,
        initial_state: str | None = None,
        record: bool = False,
    ) -> str:
        """Create a session with ``agent_id`` as its first member; returns the session id.

        ``record``: record it from its first event with the ``SessionReplay`` attached to this manager."""
        self._check_open()
        if record and self._recorder is None:
            raise ReplayError("record=True needs a SessionReplay on this manager: SessionReplay(manager)")
        started = time.perf_counter()
        check_id(agent_id, "agent id")
        sid = check_id(session_id) if session_id is not None else new_session_id()
        state = check_name(initial_state or self.config.initial_state, "state")
        ttl = check_int(self.config.default_ttl if ttl is None else ttl, "ttl", 1, MAX_TTL)
        metadata_json = self._metadata_json(metadata)
        keys = self.keys.session(sid)
        args: list[str | int] = [
            sid,
            agent_id,
            ttl,
            metadata_json,
            state,
            os.urandom(8).hex(),
            self.keys.global_channel,
        ]
        ok = False
        try:
            _, created_ms, _ = await self.store.create(keys, args)
            ok = True
        finally:
            self._observe("create", started, ok)
        self.local_members.add(sid, agent_id)
        await self._best_effort(self.store.index_session(sid, created_ms, agent_joined=agent_id))
        if record and self._recorder is not None:
            await self._recorder(sid)
        return sid

    def _metadata_json(self, metadata: Mapping[str, Any] | None) -> str:
        if metadata is None:
            return "{}"
        try:
            text = json.dumps(dict(metadata), separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidEventError(f"metadata must be JSON-serializable: {exc}") from exc
        if len(text.encode()) > self.config.max_event_bytes:
            raise InvalidEventError(
                f"metadata is {len(text.encode())} bytes; the limit is {self.config.max_event_bytes}"
            )
        return text

    @tracked_in_flight
    async def join_session(self, session_id: str, agent_id: str) -> bool:
        """Add ``agent_id`` to the session (appends a 'join' event); False if it already was a member."""
        self._check_open()
        started = time.perf_counter()
        check_id(session_id)
        check_id(agent_id, "agent id")
        ok = False
        try:
            _, joined = await self.store.join(
                self.keys.session(session_id), [session_id, agent_id, self.keys.global_channel]
            )
            ok = True
        except SessionNotFoundError:
            raise await self._missing(session_id) from None
        finally:
            self._observe("join", started, ok)
        self.local_members.add(session_id, agent_id)
        if joined:
            await self._best_effort(
                self.store.index_session(session_id, int(time.time() * 1000), agent_joined=agent_id)
            )
        return joined

    @tracked_in_flight
    async def leave_session(self, session_id: str, agent_id: str) -> bool:
        """Remove ``agent_id`` (appends a 'leave' event); the last leave starts the grace period.

        Returns False if the agent was not a member (leaving twice is harmless)."""
        self._check_open(mutation=False)
        started = time.perf_counter()
        check_id(session_id)
        check_id(agent_id, "agent id")
        keys = self.keys.session(session_id)
        ok = False
        try:
            _, left, _ = await self.store.leave(
                keys, [session_id, agent_id, self.config.grace_ttl, self.keys.global_channel]
            )
            ok = True
        except SessionNotFoundError:
            raise await self._missing(session_id) from None
        finally:
            self._observe("leave", started, ok)
        self.local_members.remove(session_id, agent_id)
        if left:
            await self._best_effort(self.store.unindex_session_agent(session_id, agent_id))
        return left

    @tracked_in_flight
    async def complete_session(self, session_id: str, actor: str) -> int:
        """Mark the session completed (appends 'complete'); it then expires after ``grace_ttl``."""
        self._check_open(mutation=False)
        started = time.perf_counter()
        check_id(session_id)
        check_id(actor, "agent id")
        ok = False
        try:
            seq, _ = await self.store.complete(
                self.keys.session(session_id),
                [session_id, actor, self.config.grace_ttl, self.keys.global_channel],
            )
            ok = True
        except SessionNotFoundError:
            raise await self._missing(session_id) from None
        finally:
            self._observe("complete", started, ok)
        self.local_members.drop(session_id)
        await self._best_effort(self.store.unindex_session(session_id, []))
        return seq

    async def get_session(self, session_id: str) -> SessionDocument:
        """The session's current document (state, members, last seq, TTL, checkpoint...)."""
        self._check_open(mutation=False)
        check_id(session_id)
        document = await self.store.get_session(session_id)
        if document is None:
            raise await self._missing(session_id)
        return document

    # -- events ---------------------------------------------------------------------------------------------
    async def get_events(
        self, session_id: str, from_seq: int = 1, to_seq: int | None = None, limit: int | None = None
    ) -> list[Event]:
        """Stored events with ``from_seq <= seq <= to_seq`` (oldest first, at most ``limit``)."""
        self._check_open(mutation=False)
        check_id(session_id)
        check_int(from_seq, "from_seq")
        to_seq = check_optional_int(to_seq, "to_seq")
        limit = check_optional_int(limit, "limit", 1)
        if to_seq is not None and to_seq < from_seq:
            raise InvalidEventError(f"bad range: from_seq={from_seq} > to_seq={to_seq}", argument="to_seq")
        events = await self.store.get_events(session_id, max(from_seq, 1), to_seq, limit)
        if not events and await self.store.first_and_last_seq(session_id) is None:
            raise await self._missing(session_id)
        return events

    def subscribe(self, session_id: str, from_seq: int = 1) -> AsyncIterator[Event]:
        """Every event from ``from_seq`` on, in order, exactly once: catch-up from the log, then live.

        Survives Redis restarts (resumes by seq); raises ``EventsTrimmedError`` if events it still needed were
        trimmed; ends when the session is completed and fully read, expires, or the manager closes."""
        check_id(session_id)
        check_int(from_seq, "from_seq")
        block_ms = min(self.config.subscribe_block_ms, int(self.config.socket_timeout * 1000) - 250)
        return subscription.follow(self, session_id, from_seq, block_ms=block_ms, missing=self._missing)

    def lifecycle(self) -> AsyncIterator[LifecycleNotice]:
        """Notifications of session lifecycle events (start, join, leave, complete, checkpoint) as they happen.

        Pub/sub: notifications sent while disconnected are not replayed (the event logs hold the truth)."""
        return subscription.lifecycle(self)

    # -- checkpoints and failure snapshots -------------------------------------------------------------------
    @tracked_in_flight
    async def checkpoint(
        self,
        session_id: str,
        *,
        actor: str = SYSTEM_ACTOR,
        reason: str = "manual",
        force_snapshot: bool = False,
        grace_ttl: int | None = None,
        include_failure_snapshot: bool = False,
    ) -> str:
        """Store the session's state; returns the checkpoint id (``cp-<seq>``).

        Without ``force_snapshot`` a session with no events since its last checkpoint returns that one.
        ``grace_ttl`` shortens the session's remaining lifetime to that many seconds (never deletes it).
        ``include_failure_snapshot`` also takes a failure snapshot if the session is in a failure state."""
        self._check_open(mutation=False)
        started = time.perf_counter()
        check_id(session_id)
        check_id(actor, "agent id")
        check_name(reason, "checkpoint reason")
        check_optional_int(grace_ttl, "grace_ttl", 1, MAX_TTL)
        args: list[str | int] = [
            session_id, actor, reason, 1 if force_snapshot else 0, "" if grace_ttl is None else grace_ttl,
            1 if include_failure_snapshot else 0, self.config.max_checkpoints_per_session,
            self.keys.global_channel, self._failure_csv, self._failure_ttl_ms, self.config.failure_snapshot_events,
        ]  # fmt: skip
        ok = False
        try:
            cp_id, _, _, failure_id = await self.store.checkpoint(self.keys.session(session_id), args)
            ok = True
        except SessionNotFoundError:
            raise await self._missing(session_id) from None
        finally:
            self._observe("checkpoint", started, ok)
        if failure_id:
            await self._best_effort(self.store.index_failure(session_id, failure_id))
        return cp_id

    async def get_checkpoints(self, session_id: str, limit: int | None = None) -> list[Checkpoint]:
        """The session's checkpoints, newest first."""
        self._check_open(mutation=False)
        check_id(session_id)
        return await self.store.get_checkpoints(session_id, check_optional_int(limit, "limit", 1))

    async def get_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint:
        """One checkpoint by id (``cp-<seq>``)."""
        self._check_open(mutation=False)
        check_id(session_id)
        seq = checkpoint_seq(checkpoint_id)
        checkpoint = await self.store.get_checkpoint(session_id, seq) if seq is not None else None
        if checkpoint is None:
            raise CheckpointNotFoundError(f"no checkpoint {checkpoint_id!r} in session {session_id!r}")
        return checkpoint

    async def list_failure_snapshots(self, limit: int = 100) -> list[FailureSnapshotRef]:
        """Failure snapshots of all sessions, newest first (they outlive their sessions)."""
        self._check_open(mutation=False)
        return await self.store.failure_refs(check_int(limit, "limit", 1))

    async def get_failure_snapshot(self, session_id: str, snapshot_id: str) -> FailureSnapshot | None:
        """One failure snapshot, or None if it expired."""
        self._check_open(mutation=False)
        check_id(session_id)
        return await self.store.get_failure_snapshot(session_id, check_snapshot_id(snapshot_id))

    # -- administration ---------------------------------------------------------------------------------------
    async def list_active_sessions(self, limit: int | None = None) -> list[str]:
        """Ids of live, not completed sessions, most recently active first."""
        self._check_open(mutation=False)
        return await analytics.active_session_ids(self.store, check_optional_int(limit, "limit", 1))

    async def get_sessions_by_agent(self, agent_id: str) -> list[str]:
        """Ids of live sessions ``agent_id`` is a member of, most recently joined first."""
        self._check_open(mutation=False)
        check_id(agent_id, "agent id")
        return await analytics.sessions_of_agent(self.store, agent_id)

    async def get_stats(self, *, scan_events: bool = True) -> SessionStats:
        """Statistics computed from the stored sessions; ``scan_events=False`` skips reading the event logs
        (event types, per-agent events, handoffs, time to fix), which costs one read per session."""
        self._check_open(mutation=False)
        return await analytics.compute_stats(
            self.store, failure_states=self.config.failure_states, scan_events=scan_events
        )

    async def health_check(self) -> HealthStatus:
        """Redis reachability, latency, version, memory, scripts and active sessions."""
        return await maintenance.health_check(self.store)

    async def perform_maintenance(self) -> MaintenanceReport:
        """Remove index entries of expired or completed sessions and expired failure snapshots."""
        self._check_open(mutation=False)
        report = await maintenance.perform_maintenance(
            self.store, failure_snapshot_ttl=self.config.failure_snapshot_ttl
        )
        await self._best_effort(self._forget_finished_sessions())
        return report

    async def _forget_finished_sessions(self) -> None:
        """Drop ``local_members`` entries of sessions that completed (elsewhere) or expired meanwhile."""
        ids = list(self.local_members)
        for start in range(0, len(ids), 1000):
            statuses = await self.store.statuses(ids[start : start + 1000])
            for session_id, status in statuses.items():
                if status != "active":
                    self.local_members.drop(session_id)

    async def _missing(self, session_id: str) -> SessionNotFoundError:
        """NotFound or Expired (see ``EmitMethods._missing``); a session found gone is no longer local."""
        self.local_members.drop(session_id)
        return await super()._missing(session_id)
