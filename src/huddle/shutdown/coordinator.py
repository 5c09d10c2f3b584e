"""SessionGracefulShutdown: drain, checkpoint, preserve, clean up within a grace period, or force."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from ..backend.connection import RedisClient
from ..core.keys import KeySpace
from ..errors import ShutdownError
from . import components
from .config import ShutdownConfig, ShutdownOptions
from .models import (
    RecoveryData,
    ResumeReport,
    ShutdownPhase,
    ShutdownStatus,
)
from .preserve import CHECKPOINT_REASON, checkpoint_sessions
from .recovery import RecoveryStore, recovery_document
from .reporter import Reporter, ShutdownCallback
from .resume import resume_from
from .signals import SignalHandlers
from .state import ShutdownState
from .steps import BoundedSteps

if TYPE_CHECKING:
    from ..core.manager import SessionManager

log = logging.getLogger("huddle.shutdown")


class _PhaseTimeout(Exception):
    """A phase step outlived its timeout (internal: turns the shutdown into ``forced``)."""


class SessionGracefulShutdown:
    """Shuts a worker down in phases (initiated, draining, checkpointing, cleanup, complete | forced).

    Signals (SIGTERM, SIGINT, SIGQUIT by default) start it; a second signal forces it at once. It never exits the
    process: ``wait()`` returns the final status, whose ``exit_code`` the caller may use."""

    def __init__(self, config: ShutdownConfig | None = None) -> None:
        self.config = config if config is not None else ShutdownConfig()
        self._manager: SessionManager | None = None
        self._redis: RedisClient | None = None
        self._components: dict[str, object] = {}
        self._reporter = Reporter()
        self._signals = SignalHandlers(self._on_signal)
        self._state: ShutdownState | None = None
        self._task: asyncio.Task[ShutdownStatus] | None = None
        self._force = asyncio.Event()
        self._started = asyncio.Event()
        self._steps = BoundedSteps()
        self._closed = False

    # -- setup ------------------------------------------------------------------------------------------------
    async def initialize(
        self,
        *,
        session_manager: SessionManager | None = None,
        redis: RedisClient | None = None,
        session_store: object | None = None,
        session_replay: object | None = None,
        session_migration: object | None = None,
        health_check: object | None = None,
        handle_signals: bool | None = None,
        http_server: object | None = None,
    ) -> Self:
        """Attach the services to shut down (each optional) and install the signal handlers.

        ``http_server``: an object with ``stop_accepting(reason)`` (called first when draining: stop taking
        connections, end live streams with a retry hint) and ``close()`` (finish in-flight requests)."""
        if self._state is not None:
            raise ShutdownError("cannot initialize: a shutdown has already started")
        if self._closed:
            raise ShutdownError("cannot initialize a closed SessionGracefulShutdown")
        self._manager, self._redis = session_manager, redis
        found = {
            "http": http_server,
            "replay": session_replay,
            "migration": session_migration,
            "health": health_check,
        }
        self._components = {name: value for name, value in found.items() if value is not None}
        del session_store  # accepted for the spec's signature; the manager owns its store
        self._signals.remove()
        if self.config.handle_signals if handle_signals is None else handle_signals:
            self._signals.install(asyncio.get_running_loop(), self.config.signal_numbers())
        return self

    def on_event(self, callback: ShutdownCallback) -> None:
        """Call ``callback(event)`` for every phase change, progress report and error (e.g. to log them)."""
        self._reporter.callbacks.append(callback)

    @property
    def handled_signals(self) -> list[str]:
        """Names of the signals whose handlers are installed right now."""
        return self._signals.names

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._state is None:
            self._start(ShutdownOptions(reason=f"received {sig.name}"), signal_name=sig.name)
        else:
            self.force(f"second signal {sig.name} during shutdown")

    # -- control ----------------------------------------------------------------------------------------------
    async def shutdown(
        self, reason: str = "shutdown requested", *, graceful: bool = True, preserve_data: bool = True
    ) -> ShutdownStatus:
        """Run the shutdown (or join the one already running) and return its final status."""
        options = ShutdownOptions.build(reason=reason, graceful=graceful, preserve_data=preserve_data)
        if self._task is None:
            self._start(options, signal_name=None)
        return await self.wait()

    def _start(self, options: ShutdownOptions, signal_name: str | None) -> None:
        self._state = ShutdownState(options, signal_name, time.monotonic() + self.config.grace_period)
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name="huddle-shutdown")
        self._started.set()

    def force(self, reason: str = "forced by request") -> None:
        """Skip what is left of a running shutdown: close connections now (phase ``forced``)."""
        if self._state is not None and self._state.forced_reason is None:
            self._state.forced_reason = reason
        self._force.set()

    async def wait(self) -> ShutdownStatus:
        """Wait until a shutdown (started by a signal or a call) has finished; returns its final status."""
        await self._started.wait()
        assert self._task is not None
        return await asyncio.shield(self._task)

    def get_shutdown_status(self) -> ShutdownStatus | None:
        """The current status, or None while no shutdown has started."""
        return None if self._state is None else self._state.snapshot()

    def is_shutdown_in_progress(self) -> bool:
        """True from the start of a shutdown until it is complete or forced."""
        return self._state is not None and not self._state.snapshot().done

    # -- the phases -------------------------------------------------------------------------------------------
    async def _supervise(self) -> ShutdownStatus:
        state = self._state
        assert state is not None
        self._reporter.emit("phase", ShutdownPhase.INITIATED, f"shutdown initiated: {state.options.reason}")
        if not state.options.graceful:
            self.force("graceful=False requested")
        phases = asyncio.create_task(self._run_phases(state), name="huddle-shutdown-phases")
        forced = asyncio.create_task(self._force.wait())
        try:
            await asyncio.wait(
                {phases, forced}, timeout=state.remaining(), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            forced.cancel()
        if (
            phases.done()
            and not phases.cancelled()
            and phases.exception() is None
            and not self._force.is_set()
        ):
            self._enter(state, ShutdownPhase.COMPLETE)
            self._reporter.emit(
                "phase", ShutdownPhase.COMPLETE, "shutdown complete", errors=len(state.errors)
            )
        else:
            if phases.done() and not phases.cancelled() and phases.exception() is not None:
                cause = phases.exception()
                state.forced_reason = state.forced_reason or str(cause)
            self._steps.abandon(phases)
            if state.forced_reason is None:
                state.forced_reason = f"grace period of {self.config.grace_period:g}s exceeded"
            await self._force_now(state)
        state.finished_at = datetime.now(UTC)
        self._signals.remove()
        return state.snapshot()

    async def _run_phases(self, state: ShutdownState) -> None:
        cfg = self.config
        self._enter(state, ShutdownPhase.DRAINING)
        await self._step(state, self._drain(state), cfg.phase_timeout("drain"))
        self._enter(state, ShutdownPhase.CHECKPOINTING)
        if state.options.preserve_data:
            await self._step(state, self._preserve(state), cfg.phase_timeout("checkpoint"))
        else:
            self._reporter.progress(state, "preserve_data=False: no checkpoints or recovery data")
        self._enter(state, ShutdownPhase.CLEANUP)
        await self._step(state, self._cleanup(state), cfg.phase_timeout("cleanup"))

    async def _step(self, state: ShutdownState, work: Coroutine[Any, Any, None], budget: float) -> None:
        """Run one phase's work bounded by its timeout (and the grace period); a timeout forces the shutdown."""
        limit = min(budget, state.remaining())
        task = await self._steps.run(work, limit)
        if task is None:
            raise _PhaseTimeout(f"phase {state.phase.value} did not finish within {limit:.1f}s")
        task.result()

    def _enter(self, state: ShutdownState, phase: ShutdownPhase) -> None:
        state.enter(phase)
        if phase not in (ShutdownPhase.COMPLETE, ShutdownPhase.FORCED):
            self._reporter.emit("phase", phase, f"shutdown phase {phase.value}")

    async def _drain(self, state: ShutdownState) -> None:
        http = self._components.get("http")
        if http is not None:
            await self._guard(
                state, "stopping the HTTP server", components.stop_accepting(http, state.options.reason)
            )
        health = self._components.get("health")
        if health is not None:
            await self._guard(
                state,
                "marking the health check not ready",
                components.mark_not_ready(health, state.options.reason),
            )
        manager = self._manager
        if manager is None:
            return
        manager.begin_draining()
        state.in_flight_at_drain = manager.in_flight
        self._reporter.progress(state, f"refusing new work; {manager.in_flight} operation(s) in flight")
        await manager.wait_idle()
        self._reporter.progress(state, "no operation in flight")

    async def _preserve(self, state: ShutdownState) -> None:
        manager, cfg = self._manager, self.config
        if manager is not None and cfg.checkpoint_active_sessions:
            await checkpoint_sessions(manager, state, self._reporter, cfg.checkpoint_concurrency)
        replay = self._components.get("replay")
        candidates = list(manager.local_members) if manager is not None else []
        if replay is not None and cfg.preserve_replays:
            recordings = await self._guard(
                state, "preserving recordings", components.preserve_recordings(replay, candidates)
            )
            state.recordings = list(recordings or [])
            self._reporter.progress(state, f"{len(state.recordings)} recording(s) preserved")
        migration = self._components.get("migration")
        if migration is not None:
            tasks = await self._guard(
                state, "stopping migrations and syncs", components.preserve_tasks(migration)
            )
            state.tasks = list(tasks or [])
            self._reporter.progress(state, f"{len(state.tasks)} migration/sync task(s) stopped at a cursor")
        if cfg.enable_recovery_data:
            await self._guard(state, "writing recovery data", self._write_recovery(state))

    async def _cleanup(self, state: ShutdownState) -> None:
        for name in ("http", "replay", "migration", "health"):
            component = self._components.get(name)
            if component is not None:
                await self._guard(state, f"closing {name}", components.close_component(component))
        if self._manager is not None:
            await self._guard(state, "closing the session manager", self._manager.close())
        if self._redis is not None:
            await self._guard(state, "closing the redis client", self._redis.aclose())
        self._reporter.progress(state, "components and connections closed")

    async def _guard(self, state: ShutdownState, what: str, work: Coroutine[Any, Any, Any]) -> Any:
        """Run one step; an error is reported and recorded but does not stop the other steps."""
        try:
            return await work
        except Exception as exc:
            self._reporter.error(state, f"{what} failed: {type(exc).__name__}: {exc}")
            return None

    # -- forced -----------------------------------------------------------------------------------------------
    async def _force_now(self, state: ShutdownState) -> None:
        """Close every connection with a short bound each; write what is known to the recovery data."""
        self._enter(state, ShutdownPhase.FORCED)
        self._reporter.emit("error", ShutdownPhase.FORCED, f"shutdown forced: {state.forced_reason}")
        cap = self.config.force_close_timeout
        if self._manager is not None:
            self._manager.begin_draining()
        if state.options.preserve_data and self.config.enable_recovery_data:
            await self._bounded(state, "writing recovery data", self._write_recovery(state), cap)
        closes: list[tuple[str, Coroutine[Any, Any, Any]]] = [
            (f"closing {name}", components.close_component(component))
            for name, component in self._components.items()
        ]
        if self._manager is not None:
            closes.append(("closing the session manager", self._manager.close()))
        if self._redis is not None:
            closes.append(("closing the redis client", self._redis.aclose()))
        await asyncio.gather(*(self._bounded(state, what, work, cap) for what, work in closes))

    async def _bounded(
        self, state: ShutdownState, what: str, work: Coroutine[Any, Any, Any], budget: float
    ) -> None:
        task = await self._steps.run(work, budget)
        if task is None:
            self._reporter.error(state, f"{what} did not finish within {budget:g}s; abandoned")
        elif not task.cancelled() and task.exception() is not None:
            self._reporter.error(state, f"{what} failed: {task.exception()}")

    # -- recovery data ----------------------------------------------------------------------------------------
    def _recovery_store(self) -> RecoveryStore | None:
        if self._manager is not None:
            client, keys = self._manager.client, self._manager.keys
        elif self._redis is not None:
            client, keys = self._redis, KeySpace(self.config.namespace or "huddle")
        else:
            return None
        if self.config.namespace is not None and self.config.namespace != keys.namespace:
            keys = KeySpace(self.config.namespace)
        return RecoveryStore(client, keys, self.config.instance_id)

    def _require_store(self) -> RecoveryStore:
        store = self._recovery_store()
        if store is None:
            raise ShutdownError(
                "no Redis to keep recovery data in: initialize() with session_manager or redis"
            )
        return store

    async def _write_recovery(self, state: ShutdownState) -> None:
        store = self._recovery_store()
        if store is None:
            self._reporter.progress(state, "no Redis client: recovery data not written")
            return
        data = recovery_document(state, self.config.instance_id, store.namespace)
        await store.save(data, self.config.recovery_ttl)
        state.recovery_written = True
        self._reporter.progress(state, f"recovery data written to {store.key}", sessions=len(data.sessions))

    async def get_recovery_data(self) -> RecoveryData | None:
        """The recovery document the last shutdown of this instance left, or None."""
        return await self._require_store().load()

    async def clear_recovery_data(self) -> bool:
        """Delete this instance's recovery document; True if there was one."""
        return await self._require_store().clear()

    async def resume(
        self,
        *,
        session_replay: object | None = None,
        session_migration: object | None = None,
        clear: bool = True,
    ) -> ResumeReport:
        """On the next start: adopt the sessions still alive, resume recordings and tasks, clear the document."""
        data = await self.get_recovery_data()
        replay = session_replay if session_replay is not None else self._components.get("replay")
        migration = session_migration if session_migration is not None else self._components.get("migration")
        report = await resume_from(data, self._manager, replay, migration)
        if clear and data is not None:
            await self.clear_recovery_data()
        return report

    # -- lifecycle of this object -------------------------------------------------------------------------------
    async def close(self) -> None:
        """Remove the signal handlers; a shutdown still running is forced and awaited (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None and not self._task.done():
            self.force("SessionGracefulShutdown closed")
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)
        self._signals.remove()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


__all__ = ["CHECKPOINT_REASON", "SessionGracefulShutdown", "ShutdownCallback"]
