"""A blocking ``SessionManager`` for code without an event loop (threads, agent tools, notebooks).

Each call runs the async manager's method to completion, so methods, arguments, errors and guarantees are the
async manager's. A thread without a running loop gets its own loop and manager (no hand-over between threads);
a thread that already runs an event loop (a notebook cell) hands the call to a private loop thread, so its own
loop is never re-entered. Safe from many threads at once. ``subscribe`` and ``lifecycle`` are plain iterators."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
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
from .thread_loop import ThreadLoop

T = TypeVar("T")


async def _await(work: Awaitable[T]) -> T:
    return await work


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (the ``fast`` extra: cheaper cross-thread wake-ups), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _Call(Generic[T]):
    """One awaitable handed to the loop thread; ``finished`` is released once its outcome is known."""

    __slots__ = ("error", "finished", "result", "work")

    def __init__(self, work: Awaitable[T]) -> None:
        self.work = work
        self.finished = threading.Lock()
        self.finished.acquire()
        self.result: T | None = None
        self.error: BaseException | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop thread: run the work as a task."""
        try:
            coro = self.work if isinstance(self.work, Coroutine) else _await(self.work)
            loop.create_task(coro).add_done_callback(self._done)
        except BaseException as exc:  # could not even start: report it to the caller
            self.error = exc
            self.finished.release()

    def _done(self, task: asyncio.Task[T]) -> None:
        if task.cancelled():
            self.error = ShuttingDownError("the call was cancelled because the session manager closed")
        elif (error := task.exception()) is not None:
            self.error = error
        else:
            self.result = task.result()
        self.finished.release()

    def close(self) -> None:
        """Discard work that will never run."""
        if isinstance(self.work, Coroutine):
            self.work.close()

    def outcome(self) -> T:
        """The result, or raise the error."""
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class _LoopThread:
    """An event loop running forever on a daemon thread."""

    def __init__(self) -> None:
        self.loop = new_loop()
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
        call: _Call[T] = _Call(work)
        try:
            self.loop.call_soon_threadsafe(call.start, self.loop)
        except RuntimeError:  # the loop closed between the check and the call
            call.close()
            raise ShuttingDownError("the blocking session manager is closed") from None
        call.finished.acquire()  # a plain lock is the cheapest cross-thread wake-up CPython has
        return call.outcome()

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
    """The blocking twin of ``huddle.SessionManager``: the same methods without ``await``.

    A call from a thread without a running event loop runs on that thread's own loop and manager (no hand-over
    between threads: the cheapest path); a call from inside a running loop (a notebook) and every iterator run
    on a private loop thread, so the caller's loop is never re-entered."""

    def __init__(self, config: SessionManagerConfig | None = None) -> None:
        self._config = config if config is not None else SessionManagerConfig()
        self._runner = _LoopThread()
        self._closed = False
        self._local = threading.local()
        self._contexts: list[ThreadLoop] = []
        self._contexts_lock = threading.Lock()
        try:
            self._manager = self._runner.run(self._build(self._config))
        except BaseException:
            self._runner.stop()
            raise

    @staticmethod
    async def _build(config: SessionManagerConfig) -> AsyncSessionManager:
        return AsyncSessionManager(config)  # built on the loop thread that will use its connections

    @classmethod
    def from_env(cls) -> Self:
        """A manager configured from ``HUDDLE_*`` environment variables."""
        return cls(SessionManagerConfig())

    @property
    def async_manager(self) -> AsyncSessionManager:
        """The async manager of the private loop thread (use it only on ``loop``)."""
        return self._manager

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The private event loop (calls from running loops and the iterators run there)."""
        return self._runner.loop

    @property
    def config(self) -> SessionManagerConfig:
        """The manager's settings."""
        return self._config

    def _context(self) -> ThreadLoop:
        context: ThreadLoop | None = getattr(self._local, "context", None)
        if context is None:
            context = ThreadLoop(self._config)
            with self._contexts_lock:
                if self._closed:
                    raise ShuttingDownError("the blocking session manager is closed")
                self._contexts.append(context)
            self._local.context = context
        return context

    def _call(self, call: Callable[[AsyncSessionManager], Awaitable[T]]) -> T:
        if self._closed:
            raise ShuttingDownError("the blocking session manager is closed")
        if asyncio._get_running_loop() is not None:  # inside a running loop: hand over, never re-enter it
            return self._runner.run(_await(call(self._manager)))
        context = self._context()
        with context.lock:
            if context.loop.is_closed():
                raise ShuttingDownError("the blocking session manager is closed")
            return context.run(call(context.manager))

    def _run(self, work: Awaitable[T]) -> T:
        return self._runner.run(work)

    # -- lifecycle ----------------------------------------------------------------------------------------
    def connect(self) -> Self:
        """Check that Redis answers and load the scripts (optional: calls load them on demand)."""
        self._call(lambda m: m.connect())
        return self

    def close(self) -> None:
        """Close every connection and loop this manager made, and stop its loop thread (idempotent)."""
        with self._contexts_lock:
            if self._closed:
                return
            self._closed = True
            contexts, self._contexts = self._contexts, []
        try:
            for context in contexts:
                with context.lock:  # waits for a call in flight on that thread
                    context.close()
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
        return self._closed

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
        return self._call(
            lambda m: m.create_session(
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
        return self._call(lambda m: m.join_session(session_id, agent_id))

    def leave_session(self, session_id: str, agent_id: str) -> bool:
        """Remove ``agent_id`` from the session; False if it was not a member."""
        return self._call(lambda m: m.leave_session(session_id, agent_id))

    def complete_session(self, session_id: str, actor: str) -> int:
        """Mark the session completed; returns the seq of the 'complete' event."""
        return self._call(lambda m: m.complete_session(session_id, actor))

    def get_session(self, session_id: str) -> SessionDocument:
        """The session's current document."""
        return self._call(lambda m: m.get_session(session_id))

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
        return self._call(
            lambda m: m.emit_event(
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
        return self._call(
            lambda m: m.emit_events(
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
        return self._call(lambda m: m.get_events(session_id, from_seq, to_seq, limit))

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
        return self._call(
            lambda m: m.checkpoint(
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
        return self._call(lambda m: m.get_checkpoints(session_id, limit))

    def get_checkpoint(self, session_id: str, checkpoint_id: str) -> Checkpoint:
        """One checkpoint by id."""
        return self._call(lambda m: m.get_checkpoint(session_id, checkpoint_id))

    def list_failure_snapshots(self, limit: int = 100) -> list[FailureSnapshotRef]:
        """Failure snapshots of all sessions, newest first."""
        return self._call(lambda m: m.list_failure_snapshots(limit))

    def get_failure_snapshot(self, session_id: str, snapshot_id: str) -> FailureSnapshot | None:
        """One failure snapshot, or None if it expired."""
        return self._call(lambda m: m.get_failure_snapshot(session_id, snapshot_id))

    # -- administration -----------------------------------------------------------------------------------
    def list_active_sessions(self, limit: int | None = None) -> list[str]:
        """Ids of live, not completed sessions, most recently active first."""
        return self._call(lambda m: m.list_active_sessions(limit))

    def get_sessions_by_agent(self, agent_id: str) -> list[str]:
        """Ids of live sessions ``agent_id`` is a member of."""
        return self._call(lambda m: m.get_sessions_by_agent(agent_id))

    def get_stats(self, *, scan_events: bool = True) -> SessionStats:
        """Statistics computed from the stored sessions."""
        return self._call(lambda m: m.get_stats(scan_events=scan_events))

    def health_check(self) -> HealthStatus:
        """Redis reachability, latency, version, memory, scripts and active sessions."""
        return self._call(lambda m: m.health_check())

    def perform_maintenance(self) -> MaintenanceReport:
        """Remove index entries of expired or completed sessions and expired failure snapshots."""
        return self._call(lambda m: m.perform_maintenance())

    def begin_draining(self) -> None:
        """Refuse new sessions and events from now on."""
        with self._contexts_lock:
            managers = [self._manager, *(context.manager for context in self._contexts)]
        for manager in managers:
            manager.begin_draining()  # sets a flag: safe from any thread

    def wait_idle(self, timeout: float | None = None) -> None:
        """Return once no mutation of this thread's manager is in flight (``TimeoutError`` after ``timeout``)."""

        async def idle(manager: AsyncSessionManager) -> None:
            async with asyncio.timeout(timeout):
                await manager.wait_idle()

        self._call(idle)


__all__ = ["BlockingIterator", "SessionManager"]
