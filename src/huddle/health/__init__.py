"""Health checks, performance monitoring and the HTTP endpoints (``SessionHealthCheck``)."""

from .alerts import AlertCallback
from .config import DEFAULT_THRESHOLDS, HealthConfig, Threshold
from .histogram import LatencyHistogram
from .metrics import PerformanceMonitor
from .report import (
    Alert,
    Check,
    ComponentHealth,
    HealthCheckEndpoint,
    HealthReport,
    Level,
    MetricsReport,
    PerformanceReport,
    ProcessReport,
    Readiness,
    WindowReport,
)
from .service import SessionHealthCheck
from .windows import SlidingWindow

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Alert",
    "AlertCallback",
    "Check",
    "ComponentHealth",
    "HealthCheckEndpoint",
    "HealthConfig",
    "HealthReport",
    "LatencyHistogram",
    "Level",
    "MetricsReport",
    "PerformanceMonitor",
    "PerformanceReport",
    "ProcessReport",
    "Readiness",
    "SessionHealthCheck",
    "SlidingWindow",
    "Threshold",
    "WindowReport",
]
