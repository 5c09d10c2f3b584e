"""A blocking ``SessionManager`` for code without an event loop (threads, agent tools, notebooks).

The async manager runs on a private event-loop thread; each call hands its coroutine to that loop and waits for
the result, so methods, arguments, errors and guarantees are the async manager's. It is safe from many threads
at once, and from a thread that already runs an event loop (a notebook cell): the work never runs on the caller's
loop. ``subscribe`` and ``lifecycle`` are plain iterators."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Awaitable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from ..config import SessionManagerConfig
from ..core.manager import SYSTEM_ACTOR
from ..core.manager import SessionManager as AsyncSessionManager
from ..errors import ShuttingDownError
from ..models import (
    Checkpoint,
    Event,
    FailureSnapshot,
    FailureSnapshotRef,
    HealthStatus,
    LifecycleNotice,
    MaintenanceReport,
    SessionDocument,
    SessionEvent,
    SessionStats,
)

T = TypeVar("T")


async def _await(work: Awaitable[T]) -> T:
    return await work


class _LoopThread:
    """An event loop running forever on a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="huddle-blocking-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, work: Awaitable[T]) -> T:
        """Run ``work`` on the loop and wait for its result (its exception is raised here)."""
        if threading.current_thread() is self.thread or self.loop.is_closed():
            if isinstance(work, Coroutine):
                work.close()
            if self.loop.is_closed():
                raise ShuttingDownError("the blocking session manager is closed")
            raise RuntimeError("a blocking huddle call from inside its own loop thread would deadlock")
        coro = work if isinstance(work, Coroutine) else _await(work)
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise ShuttingDownError("the call was cancelled because the session manager closed") from None

    def stop(self) -> None:
        """Stop the loop and join the thread (idempotent)."""
        if self.loop.is_closed():
            return
        if threading.current_thread() is not self.thread:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.close()


class BlockingIterator(Generic[T]):
    """An async iterator of the manager, consumed as a plain iterator (``close()`` ends it)."""

    def __init__(self, runner: _LoopThread, source: AsyncIterator[T]) -> None:
        self._runner = runner
        self._source = source
        self._done = False

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        try:
            return self._runner.run(self._next())
        except StopAsyncIteration:
            self._done = True
            raise StopIteration from None

    async def _next(self) -> T:
        return await self._source.__anext__()

    def close(self) -> None:
        """Stop following (releases the Redis connection it holds)."""
        if not self._done:
            self._done = True
            aclose = getattr(self._source, "aclose", None)
            if aclose is not None and not self._runner.loop.is_closed():
                self._runner.run(aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SessionManager:
    """The blocking twin of ``huddle.SessionManager``: the same methods without ``await``."""

    def __init__(
        self, config: SessionManagerConfig | None = None, *, manager: AsyncSessionManager | None = None
    ) -> None:
        self._runner = _LoopThread()
        self._closed = False
        try:
            self._manager = manager or self._runner.run(self._build(config))
        except BaseException:
            self._runner.stop()
            raise

    @staticmethod
    async def _build(config: SessionManagerConfig | None) -> AsyncSessionManager:
        return AsyncSessionManager(config)  # built on the loop thread that will use its connections

    @classmethod
    def from_env(cls) -> Self:
        """A manager configured from ``HUDDLE_*`` environment variables."""
        return cls(SessionManagerConfig())

    @property
    def async_manager(self) -> AsyncSessionManager:
        """The async manager doing the work (use it only on ``loop``)."""
        return self._manager

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The private event loop the async manager runs on."""
        return self._runner.loop

    @property
    def config(self) -> SessionManagerConfig:
        """The manager's settings."""
        return self._manager.config

    def _run(self, work: Awaitable[T]) -> T:
        return self._runner.run(work)

    # -- lifecycle ----------------------------------------------------------------------------------------
    def connect(self) -> Self:
        """Check that Redis answers and load the scripts (optional: calls load them on demand)."""
        self._run(self._manager.connect())
        return self

    def close(self) -> None:
        """Close the manager's connections and stop the loop thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self._manager.close())
        finally:
            self._runner.stop()

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return self._closed or self._manager.closed

    # -- sessions -----------------------------------------------------------------------------------------
    def create_session(
        self,
        agent_id: str,
        *,
        session_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        ttl: int | None = None,
        initial_state: str | None = None,
        record: bool = False,
    ) -> str:
        """Create a session with ``agent_id`` as its first member; returns the session id."""
        return self._run(
            self._manager.create_session(
                agent_id,
                session_id=session_id,
                metadata=metadata,
                ttl=ttl,
                initial_state=initial_state,
                record=record,
            )
        )

    def join_session(self, session_id: str, agent_id: str) -> bool:
        """Add ``agent_id`` to the session; False if it already was a member."""
        return self._run(self._manager.join_session(session_id, agent_id))

    def leave_session(self, session_id: str, agent_id: str) -> bool:
        """Remove ``agent_id`` from the session; False if it was not a member."""
        return self._run(self._manager.leave_session(session_id, agent_id))

    def complete_session(self, session_id: str, actor: str) -> int:
        """Mark the session completed; returns the seq of the 'complete' event."""
        return self._run(self._manager.complete_session(session_id, actor))

    def get_session(self, session_id: str) -> SessionDocument:
        """The session's current document."""
        return self._run(self._manager.get_session(session_id))

    # -- events -------------------------------------------------------------------------------------------
    def emit_event(
        self,
        session_id: str,
        event: SessionEvent | Mapping[str, Any],
        actor: str,
        *,
        expected_seq: int | None = None,
        idempotency_key: str | None = None,
        reset_ttl: bool = True,
        auto_checkpoint: bool = True,
        publish_update: bool = True,
        min_replicas: int = 0,
    ) -> int:
        """Append an event as ``actor``; returns its sequence number (see the async ``emit_event``)."""
        return self._run(
            self._manager.emit_event(
                session_id,
                event,
                actor,
                expected_seq=expected_seq,
                idempotency_key=idempotency_key,
                reset_ttl=reset_ttl,
                auto_checkpoint=auto_checkpoint,
                publish_update=publish_update,
                min_replicas=min_replicas,
            )
        )

    def emit_events(
        self,
        session_id: str,
        events: Sequence[SessionEvent | Mapping[str, Any]],
        actor: str,
        *,
        expected_seq: int | None = None,
        idempotency_key: str | None = None,
        reset_ttl: bool = True,
        auto_checkpoint: bool = True,
        publish_update: bool = True,
    ) -> list[int]:
        """Append ``events`` as ``actor`` in one atomic step; returns their sequence numbers."""
        return self._run(
            self._manager.emit_events(
                session_id,
                events,
                actor,
                expected_seq=expected_seq,
                idempotency_key=idempotency_key,
                reset_ttl=reset_ttl,
                auto_checkpoint=auto_checkpoint,
                publish_update=publish_update,
            )
        )

    def get_events(
        self, session_id: str, from_seq: int = 1, to_seq: int | None = None, limit: int | None = None
    ) -> list[Event]:
        """Stored events with ``from_seq <= seq <= to_seq`` (oldest first, at most ``limit``)."""
        return self._run(self._manager.get_events(session_id, from_seq, to_seq, limit))

    def subscribe(self, session_id: str, from_seq: int = 1) -> BlockingIterator[Event]:
        """Every event from ``from_seq`` on, in order, exactly once, as a plain iterator (see the async one)."""
        return BlockingIterator(self._runner, self._run(self._subscribe(session_id, from_seq)))

    async def _subscribe(self, session_id: str, from_seq: int) -> AsyncIterator[Event]:
        return self._manager.subscribe(session_id, from_seq)

    def lifecycle(self) -> BlockingIterator[LifecycleNotice]:
        """Lifecycle notices of every session as they happen, as a plain iterator."""
        return BlockingIterator(self._runner, self._run(self._lifecycle()))

    async def _lifecycle(self) -> AsyncIterator[LifecycleNotice]:
        return self._manager.lifecycle()

    # -- checkpoints and failure snapshots ------------------------------------------------------------------
    def checkpoint(
        self,
        session_id: str,
        *,
        actor: str = SYSTEM_ACTOR,
        reason: str = "manual",
        force_snapshot: bool = False,
        grace_ttl: int | None = None,
        include_failure_snapshot: bool = False,
    ) -> str:
        """Store the session's state; returns the checkpoint id."""
        return self._run(
            self._manager.checkpoint(
                session_id,
                actor=actor,
                reason=reason,
                force_snapshot=force_snapshot,
                grace_ttl=grace_ttl,
                include_failure_snapshot=include_failure_snapshot,
            )
        )

    def get_checkpoints(self, session_id: str, limit: int | None = None) -> list[Checkpoint]:
        """The session's checkpoints, newest first."""
        return self._run(self._manager.get_checkpoints(session_id, limit))

    def get_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint:
        """One checkpoint by id."""
        return self._run(self._manager.get_checkpoint(session_id, checkpoint_id))

    def list_failure_snapshots(self, limit: int = 100) -> list[FailureSnapshotRef]:
        """Failure snapshots of all sessions, newest first."""
        return self._run(self._manager.list_failure_snapshots(limit))

    def get_failure_snapshot(self, session_id: str, snapshot_id: str) -> FailureSnapshot | None:
        """One failure snapshot, or None if it expired."""
        return self._run(self._manager.get_failure_snapshot(session_id, snapshot_id))

    # -- administration -----------------------------------------------------------------------------------
    def list_active_sessions(self, limit: int | None = None) -> list[str]:
        """Ids of live, not completed sessions, most recently active first."""
        return self._run(self._manager.list_active_sessions(limit))

    def get_sessions_by_agent(self, agent_id: str) -> list[str]:
        """Ids of live sessions ``agent_id`` is a member of."""
        return self._run(self._manager.get_sessions_by_agent(agent_id))

    def get_stats(self, *, scan_events: bool = True) -> SessionStats:
        """Statistics computed from the stored sessions."""
        return self._run(self._manager.get_stats(scan_events=scan_events))

    def health_check(self) -> HealthStatus:
        """Redis reachability, latency, version, memory, scripts and active sessions."""
        return self._run(self._manager.health_check())

    def perform_maintenance(self) -> MaintenanceReport:
        """Remove index entries of expired or completed sessions and expired failure snapshots."""
        return self._run(self._manager.perform_maintenance())

    def begin_draining(self) -> None:
        """Refuse new sessions and events from now on."""
        self._runner.loop.call_soon_threadsafe(self._manager.begin_draining)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Return once no mutation is in flight (at most ``timeout`` seconds: then ``TimeoutError``)."""

        async def idle() -> None:
            async with asyncio.timeout(timeout):
                await self._manager.wait_idle()

        self._run(idle())


__all__ = ["BlockingIterator", "SessionManager"]
