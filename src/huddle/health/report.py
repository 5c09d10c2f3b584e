"""Health report models. Field names follow the IETF health-check draft (``status``, ``checks``,
``observedValue``, ``observedUnit``, ``componentType``) when serialized with ``by_alias=True``."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

Level = Literal["healthy", "warning", "critical", "down"]
"""Huddle's status levels, from best to worst."""

ComponentLevel = Literal["healthy", "warning", "critical", "down", "not_configured"]
IetfStatus = Literal["pass", "warn", "fail"]

LEVEL_ORDER: dict[str, int] = {"healthy": 0, "warning": 1, "critical": 2, "down": 3}
LEVEL_VALUES: dict[str, int] = {"not_configured": -1, **LEVEL_ORDER}
"""Numeric value of each level (Prometheus gauges)."""


def worst(levels: list[Level]) -> Level:
    """The worst of ``levels`` (healthy when empty)."""
    result: Level = "healthy"
    for level in levels:
        if LEVEL_ORDER[level] > LEVEL_ORDER[result]:
            result = level
    return result


def ietf_status(level: Level) -> IetfStatus:
    """healthy -> pass, warning -> warn, critical/down -> fail."""
    return "pass" if level == "healthy" else "warn" if level == "warning" else "fail"


def http_status(level: Level) -> int:
    """200 for healthy and warning, 503 for critical and down."""
    return 200 if LEVEL_ORDER[level] <= LEVEL_ORDER["warning"] else 503


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)


class Check(_Model):
    """One measurement of a component (an entry of the IETF ``checks`` object)."""

    component_id: str
    component_type: str
    observed_value: float | int | str | bool | None = None
    observed_unit: str | None = None
    status: IetfStatus
    level: Level
    time: datetime
    output: str | None = None


class ComponentHealth(_Model):
    """The state of one component and the checks that decided it."""

    name: str
    level: ComponentLevel
    configured: bool = True
    output: str | None = None
    duration_ms: float | None = None
    checks: dict[str, Check] = {}
    details: dict[str, Any] = {}

    @classmethod
    def not_configured(cls, name: str) -> ComponentHealth:
        """A component that was not supplied to ``initialize``: reported, but never an error."""
        return cls(name=name, level="not_configured", configured=False, output="not configured")


class WindowReport(_Model):
    """Operations inside one sliding window."""

    window_seconds: float
    operations: int
    errors: int
    error_rate: float
    throughput_per_second: float
    average_response_time_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


class PerformanceReport(_Model):
    """Latency, throughput and error rate, over all operations and per operation, per window (1m, 5m)."""

    average_response_time_ms: float | None
    throughput: float
    error_rate: float
    p95_ms: float | None
    p99_ms: float | None
    windows: dict[str, WindowReport]
    operations: dict[str, dict[str, WindowReport]]
    lifetime_operations: int
    lifetime_errors: int


class ProcessReport(_Model):
    """This process: memory, CPU, event-loop lag."""

    pid: int
    rss_bytes: int
    cpu_percent: float
    threads: int
    open_fds: int | None
    event_loop_lag_ms: float | None
    event_loop_lag_max_ms: float | None
    uptime_seconds: float


class MetricsReport(_Model):
    """Everything ``/health/metrics`` returns."""

    performance: PerformanceReport
    process: ProcessReport
    time: datetime


class Alert(_Model):
    """A figure crossed (or came back under) a threshold, or a component changed level."""

    check: str
    level: Level
    previous: Level
    observed_value: float | int | str | bool | None
    threshold: float | None
    message: str
    time: datetime

    @property
    def resolved(self) -> bool:
        """True when the figure is healthy again."""
        return self.level == "healthy"


class HealthReport(_Model):
    """The full health of a huddle deployment (``get_health_status``)."""

    status: IetfStatus
    overall: Level
    version: str
    service_id: str
    description: str
    ready: bool
    time: datetime
    duration_ms: float
    checks: dict[str, list[Check]]
    components: dict[str, ComponentHealth]
    alerts: list[Alert]
    metrics: MetricsReport | None = None
    notes: list[str] = []

    @property
    def http_status(self) -> int:
        """200 when healthy or warning, 503 when critical or down."""
        return http_status(self.overall)


class Readiness(_Model):
    """Answer of ``/readyz``: may this process take traffic now?"""

    ready: bool
    status: IetfStatus
    reasons: list[str]
    checks: dict[str, bool]
    time: datetime


class HealthCheckEndpoint(_Model):
    """An HTTP endpoint served by ``asgi_app()``."""

    path: str
    method: str
    description: str
    content_type: str
    requires_auth: bool
