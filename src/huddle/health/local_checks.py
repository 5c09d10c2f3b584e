"""Checks of this process: operation performance (from the monitor) and the process itself."""

from __future__ import annotations

from .checkset import CheckSet
from .config import HealthConfig
from .report import ComponentHealth, PerformanceReport, ProcessReport


def performance_component(report: PerformanceReport, config: HealthConfig) -> ComponentHealth:
    """Error rate and p99 of the last minute (judged once the window has ``min_samples``), throughput."""
    checks = CheckSet("performance", "component", config)
    minute = report.windows["1m"]
    checks.add("throughput", round(minute.throughput_per_second, 3), "ops/s")
    enough = minute.operations >= config.min_samples
    few = (
        None
        if enough
        else f"{minute.operations} operations in the last minute (< {config.min_samples}): not judged"
    )
    checks.add("errorRate", round(minute.error_rate, 4), "ratio", judge=enough, output=few)
    p99 = round(minute.p99_ms, 3) if minute.p99_ms is not None else None
    checks.add("p99ResponseTime", p99, "ms", judge=enough, output=few)
    details = {"lifetime_operations": report.lifetime_operations, "lifetime_errors": report.lifetime_errors}
    return checks.component(details=details)


def process_component(report: ProcessReport, config: HealthConfig) -> ComponentHealth:
    """Resident memory, CPU and the worst event-loop lag of the last seconds."""
    checks = CheckSet("process", "system", config)
    checks.add("memory", report.rss_bytes, "bytes")
    checks.add("cpu", round(report.cpu_percent, 2), "percent")
    lag = report.event_loop_lag_max_ms
    checks.add("eventLoopLag", round(lag, 3) if lag is not None else None, "ms")
    return checks.component(
        details={"pid": report.pid, "threads": report.threads, "open_fds": report.open_fds}
    )
