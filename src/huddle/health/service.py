"""SessionHealthCheck: periodic component checks, performance metrics, alerts, readiness, the HTTP app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from prometheus_client import CollectorRegistry

from ..errors import ShuttingDownError
from ..models import SessionStats
from .alerts import AlertCallback, AlertManager
from .app import build_app, dump, endpoints
from .checks import PubSubCheck, RedisCheck, ReportingComponentCheck
from .checkset import UNREACHABLE, ComponentCheck
from .config import HealthConfig
from .local_checks import performance_component, process_component
from .metrics import PerformanceMonitor
from .process import ProcessMonitor
from .prometheus import attach, exposition
from .redact import Redactor, secrets_of_client, secrets_of_url
from .report import (
    Check,
    ComponentHealth,
    HealthCheckEndpoint,
    HealthReport,
    Level,
    MetricsReport,
    Readiness,
    ietf_status,
    worst,
)
from .sessions_check import SessionsCheck

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ..backend.connection import RedisClient
    from ..core.manager import SessionManager
    from ..core.store import SessionStore

log = logging.getLogger("huddle.health")

COMPONENTS = ("redis", "pubsub", "sessions", "replay", "migration")


class SessionHealthCheck:
    """Health monitoring and metrics: ``initialize`` it with any subset of the services, then read or serve it.

    Owns a background task (checks every ``check_interval``) and the loop-lag probe; ``close()`` (or
    ``shutdown()``) stops both and turns readiness off. The services it was given are not closed."""

    def __init__(
        self, config: HealthConfig | None = None, *, alert_callbacks: Iterable[AlertCallback] = ()
    ) -> None:
        self.config = config if config is not None else HealthConfig()
        self.registry = CollectorRegistry()
        self.performance = PerformanceMonitor(self.registry)
        self.process = ProcessMonitor(self.config.loop_lag_interval)
        self.alerts = AlertManager(self.config, alert_callbacks)
        attach(self.registry, lambda: self._report, self.performance, self.process)
        self.redact = Redactor([self.config.auth_token.get_secret_value()] if self.config.auth_token else [])
        self.session_manager: SessionManager | None = None
        self.redis: RedisClient | None = None
        self.session_store: SessionStore | None = None
        self.session_replay: object | None = None
        self.session_migration: object | None = None
        self._checks: list[ComponentCheck] = []
        self._observed: set[int] = set()
        self._report: HealthReport | None = None
        self._report_at = 0.0
        self._generation = 0
        self._lock = asyncio.Lock()
        self._stats: tuple[float, SessionStats] | None = None
        self._task: asyncio.Task[None] | None = None
        self._not_ready: str | None = None
        self._closed = False
        self._app: Starlette | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def initialize(
        self,
        *,
        session_manager: SessionManager | None = None,
        redis: RedisClient | None = None,
        session_store: SessionStore | None = None,
        session_replay: object | None = None,
        session_migration: object | None = None,
    ) -> Self:
        """Attach the services to watch (any subset), run a first check and start the background checks."""
        if self._closed:
            raise ShuttingDownError("the health check is closed")
        self.session_manager = session_manager or self.session_manager
        self.session_store = (
            session_store or (session_manager.store if session_manager else None) or self.session_store
        )
        self.redis = redis or (self.session_store.client if self.session_store else None) or self.redis
        self.session_replay = session_replay or self.session_replay
        self.session_migration = session_migration or self.session_migration
        if session_manager is not None and id(session_manager) not in self._observed:
            session_manager.add_operation_observer(self._observe)
            self._observed.add(id(session_manager))
            self.redact.add([p.get_secret_value() for p in (session_manager.config.password,) if p])
            self.redact.add(secrets_of_url(session_manager.config.redis_url))
        if self.redis is not None:
            self.redact.add(secrets_of_client(self.redis))
        self._checks = self._build_checks()
        self.process.start()
        await self.check_now()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="huddle-health-checks")
        return self

    def _build_checks(self) -> list[ComponentCheck]:
        checks: list[ComponentCheck] = []
        keys = self.session_store.keys if self.session_store is not None else None
        if self.redis is not None:
            checks.append(RedisCheck(self.redis, self.config))
            channel = keys.health_channel if keys is not None else "huddle:health:probe"
            checks.append(PubSubCheck(self.redis, channel, self.config))
        if self.session_store is not None:
            checks.append(SessionsCheck(self.session_store, self.config))
        if self.session_replay is not None:
            checks.append(
                ReportingComponentCheck("replay", self.session_replay, self.config, self.session_store)
            )
        if self.session_migration is not None:
            checks.append(
                ReportingComponentCheck("migration", self.session_migration, self.config, self.session_store)
            )
        return checks

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Turn readiness off, stop the background checks and the loop-lag probe (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.mark_not_ready("shutting down")
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.process.stop()

    async def shutdown(self) -> None:
        """The spec's name for ``close()``."""
        await self.close()

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return self._closed

    def mark_not_ready(self, reason: str = "not ready") -> None:
        """Make ``/readyz`` answer 503 from now on (e.g. when a graceful shutdown starts draining)."""
        self._not_ready = reason

    def mark_ready(self) -> None:
        """Undo ``mark_not_ready`` (has no effect once closed)."""
        if not self._closed:
            self._not_ready = None

    @property
    def not_ready_reason(self) -> str | None:
        """Why ``/readyz`` refuses traffic regardless of Redis (marked not ready, closed, draining), or None."""
        if self._not_ready is not None:
            return self._not_ready
        manager = self.session_manager
        if manager is not None and manager.closed:
            return "the session manager is closed"
        if manager is not None and manager.draining:
            return "the session manager is draining"
        return None

    # -- performance tracking ------------------------------------------------------------------------------
    def _observe(self, operation: str, seconds: float, ok: bool) -> None:
        if not self._closed:
            self.performance.observe(operation, seconds, ok)

    def record_response_time(self, milliseconds: float, operation: str = "custom") -> None:
        """Record that one of your operations took ``milliseconds`` and succeeded."""
        self.performance.record_response_time(milliseconds, operation)

    def record_error(self, operation: str = "custom") -> None:
        """Record that one of your operations failed."""
        self.performance.record_error(operation)

    def add_alert_callback(self, callback: AlertCallback) -> None:
        """Call ``callback(alert)`` (sync or async) on every alert transition."""
        self.alerts.add_callback(callback)

    # -- checks ---------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            wait = self._report_at + self.config.check_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            try:
                await self.check_now()
            except Exception:
                log.exception("health check failed; retrying in %.1fs", self.config.check_interval)
                self._report_at = time.monotonic()

    async def _run_component(self, check: ComponentCheck) -> ComponentHealth:
        started = time.perf_counter()
        try:
            result = await asyncio.wait_for(check.run(), self.config.check_timeout)
        except TimeoutError:
            level: Level = "down" if check.name == "redis" else "critical"
            result = ComponentHealth(
                name=check.name, level=level, output=f"check timed out after {self.config.check_timeout:g}s"
            )
        except UNREACHABLE as exc:
            result = ComponentHealth(name=check.name, level="critical", output=f"check failed: {exc}")
        return result.model_copy(update={"duration_ms": round((time.perf_counter() - started) * 1000, 3)})

    async def check_now(self) -> HealthReport:
        """Run every check now, evaluate alerts, and return (and cache) the report."""
        async with self._lock:
            report = await self._check()
            self._report, self._report_at = report, time.monotonic()
            self._generation += 1
            return report

    async def _check(self) -> HealthReport:
        from .. import __version__  # huddle/__init__ imports this package before it defines the version

        started = time.perf_counter()
        measured = await asyncio.gather(*(self._run_component(check) for check in self._checks))
        components = {name: ComponentHealth.not_configured(name) for name in COMPONENTS}
        components.update({component.name: component for component in measured})
        performance = self.performance.report()
        process = self.process.report()
        components["performance"] = performance_component(performance, self.config)
        components["process"] = process_component(process, self.config)
        checks: dict[str, Check] = {}
        for component in components.values():
            checks.update(component.checks)
        levels: list[Level] = [c.level for c in components.values() if c.level != "not_configured"]
        overall = worst(levels)
        alerts = self.alerts.evaluate(checks) if self.config.enable_alerts else []
        if alerts:
            await self.alerts.dispatch(alerts, self.config.check_timeout)
        now = datetime.now(UTC)
        reason = self.not_ready_reason
        return HealthReport(
            status=ietf_status(overall),
            overall=overall,
            version=__version__,
            service_id=self.config.service_id,
            description="huddle multi-agent sessions",
            ready=reason is None and components["redis"].level not in ("down",),
            time=now,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            checks={key: [check] for key, check in checks.items()},
            components=components,
            alerts=self.alerts.active() if self.config.enable_alerts else [],
            metrics=MetricsReport(performance=performance, process=process, time=now)
            if self.config.enable_detailed_metrics
            else None,
            notes=[reason] if reason else [],
        )

    async def get_health_status(self, *, refresh: bool = False) -> HealthReport:
        """The latest report; checks anew when it is older than ``check_interval`` (or ``refresh``).

        Works before ``initialize`` too (only this process is then checked); after ``close()`` the last report."""
        if self._closed:  # no more I/O: the last report stands
            if self._report is None:
                raise ShuttingDownError("the health check is closed")
            return self._report
        generation = self._generation
        if (
            refresh
            or self._report is None
            or time.monotonic() - self._report_at >= self.config.check_interval
        ):
            if self._lock.locked() and self._report is not None and not refresh:
                return (
                    self._report
                )  # a check is under way (maybe waiting on a dead Redis): don't queue behind it
            async with self._lock:
                fresh = self._generation != generation and not refresh
            if not fresh:
                return await self.check_now()
        assert self._report is not None
        return self._report

    def metrics(self) -> MetricsReport:
        """Performance and process figures, measured now."""
        return MetricsReport(
            performance=self.performance.report(), process=self.process.report(), time=datetime.now(UTC)
        )

    def prometheus(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return exposition(self.registry)

    async def session_stats(self) -> SessionStats | None:
        """The manager's session statistics (without the event-log scan), cached for ``check_interval``."""
        if self.session_manager is None:
            return None
        if self._stats is not None and time.monotonic() - self._stats[0] < self.config.check_interval:
            return self._stats[1]
        stats = await asyncio.wait_for(
            self.session_manager.get_stats(scan_events=False), self.config.check_timeout
        )
        self._stats = (time.monotonic(), stats)
        return stats

    async def check_readiness(self) -> Readiness:
        """Live readiness: accepting work, Redis answering PING, the session scripts loaded."""
        reasons: list[str] = []
        checks: dict[str, bool] = {}
        reason = self.not_ready_reason
        checks["accepting"] = reason is None
        if reason is not None:
            reasons.append(reason)
        if self.redis is not None:
            try:
                await asyncio.wait_for(self.redis.ping(), self.config.check_timeout)
                checks["redis"] = True
            except (TimeoutError, *UNREACHABLE) as exc:
                checks["redis"] = False
                reasons.append(f"redis unreachable: {exc or type(exc).__name__}")
        if self.session_store is not None and checks.get("redis", True):
            checks["scripts"] = await self._scripts_ready(reasons)
        ready = all(checks.values())
        return Readiness(
            ready=ready,
            status="pass" if ready else "fail",
            reasons=reasons,
            checks=checks,
            time=datetime.now(UTC),
        )

    async def _scripts_ready(self, reasons: list[str]) -> bool:
        store = self.session_store
        assert store is not None
        try:
            if not await asyncio.wait_for(store.scripts_loaded(), self.config.check_timeout):
                await asyncio.wait_for(store.load(), self.config.check_timeout)
            return True
        except (TimeoutError, *UNREACHABLE) as exc:
            reasons.append(f"session scripts not loaded: {exc or type(exc).__name__}")
            return False

    # -- HTTP -----------------------------------------------------------------------------------------------
    def get_health_check_endpoints(self) -> list[HealthCheckEndpoint]:
        """The endpoints ``asgi_app()`` serves."""
        return endpoints(self.config)

    def asgi_app(self) -> Starlette:
        """The endpoints as an ASGI app; mount it into your own app or serve it with uvicorn."""
        if self._app is None:
            self._app = build_app(self)
        return self._app

    def to_json(self, value: Any) -> str:
        """Serialize a report for a response, with every secret masked."""
        return self.redact(dump(value))
