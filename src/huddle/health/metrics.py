"""PerformanceMonitor: per-operation latency, throughput and error rate over sliding windows (1 min, 5 min)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

from .report import PerformanceReport, WindowReport
from .windows import Clock, SlidingWindow, WindowFigures, combined

WINDOWS: dict[str, float] = {"1m": 60.0, "5m": 300.0}
CUSTOM = "custom"
"""Operation name of ``record_response_time`` / ``record_error`` calls that name none."""

PROMETHEUS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def window_report(figures: WindowFigures) -> WindowReport:
    """The public form of a window's figures."""
    return WindowReport(
        window_seconds=figures.window_seconds,
        operations=figures.operations,
        errors=figures.errors,
        error_rate=figures.error_rate,
        throughput_per_second=figures.throughput_per_second,
        average_response_time_ms=figures.mean_ms,
        p50_ms=figures.p50_ms,
        p95_ms=figures.p95_ms,
        p99_ms=figures.p99_ms,
        max_ms=figures.max_ms,
    )


class PerformanceMonitor:
    """Records operations (timed or not, ok or failed) per operation name and in total.

    ``observe`` has the signature of ``SessionManager.add_operation_observer`` callbacks and is cheap (a few
    integer operations and two Prometheus updates), so it can run after every ``emit_event``."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        clock: Clock | None = None,
        max_operations: int = 64,
    ) -> None:
        self._clock = clock
        self._max_operations = max_operations
        self.operations: dict[str, SlidingWindow] = {}
        self.lifetime_operations = 0
        self.lifetime_errors = 0
        self._duration: Histogram | None = None
        self._errors: Counter | None = None
        self._observers: dict[str, Callable[[float], None]] = {}
        self._error_counters: dict[str, Callable[[], None]] = {}
        if registry is not None:
            self._duration = Histogram(
                "huddle_operation_duration_seconds",
                "Duration of session operations (manager operations and recorded response times).",
                ["operation"],
                registry=registry,
                buckets=PROMETHEUS_BUCKETS,
            )
            self._errors = Counter(
                "huddle_operation_errors",
                "Failed session operations (all operations: huddle_operation_duration_seconds_count).",
                ["operation"],
                registry=registry,
            )

    def _window(self, operation: str) -> SlidingWindow:
        window = self.operations.get(operation)
        if window is None:
            if len(self.operations) >= self._max_operations:
                operation = "other"  # bounded label set, whatever callers pass
                window = self.operations.get(operation)
            if window is None:
                window = self.operations[operation] = SlidingWindow(clock=self._clock)
        return window

    def _label(self, operation: str) -> str:
        return operation if operation in self.operations else "other"

    def _prometheus(self, operation: str, seconds: float | None, ok: bool) -> None:
        if self._duration is None or self._errors is None:
            return
        if seconds is not None:
            observe = self._observers.get(operation)
            if observe is None:
                observe = self._observers[operation] = self._duration.labels(self._label(operation)).observe
            observe(seconds)
        if not ok:
            count = self._error_counters.get(operation)
            if count is None:
                count = self._error_counters[operation] = self._errors.labels(self._label(operation)).inc
            count()

    def observe(self, operation: str, seconds: float | None, ok: bool = True) -> None:
        """Record one operation: its duration in seconds (None if untimed) and whether it succeeded."""
        self.lifetime_operations += 1
        if not ok:
            self.lifetime_errors += 1
        self._window(operation).record(seconds, ok)
        self._prometheus(operation, seconds, ok)

    def record_response_time(self, milliseconds: float, operation: str = CUSTOM) -> None:
        """Record a successful operation of yours that took ``milliseconds``."""
        self.observe(operation, milliseconds / 1000, True)

    def record_error(self, operation: str = CUSTOM) -> None:
        """Record a failed operation of yours (untimed)."""
        self.observe(operation, None, False)

    def total(self, seconds: float) -> WindowFigures:
        """Every operation taken together over the last ``seconds``."""
        return combined(list(self.operations.values()), seconds)

    def report(self) -> PerformanceReport:
        """Figures for every window, over all operations and per operation."""
        windows = {name: window_report(self.total(seconds)) for name, seconds in WINDOWS.items()}
        per_operation = {
            operation: {name: window_report(window.figures(seconds)) for name, seconds in WINDOWS.items()}
            for operation, window in sorted(self.operations.items())
        }
        minute = windows["1m"]
        return PerformanceReport(
            average_response_time_ms=minute.average_response_time_ms,
            throughput=minute.throughput_per_second,
            error_rate=minute.error_rate,
            p95_ms=minute.p95_ms,
            p99_ms=minute.p99_ms,
            windows=windows,
            operations=per_operation,
            lifetime_operations=self.lifetime_operations,
            lifetime_errors=self.lifetime_errors,
        )
