"""Prometheus exposition: a collector that reads the latest health report and the live monitors at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from .metrics import WINDOWS, PerformanceMonitor
from .process import ProcessMonitor
from .report import LEVEL_VALUES, HealthReport

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HealthCollector:
    """Gauges for component levels, numeric check values, windowed latency/throughput/errors and loop lag."""

    def __init__(
        self,
        report: Callable[[], HealthReport | None],
        performance: PerformanceMonitor,
        process: ProcessMonitor,
    ) -> None:
        self._report = report
        self._performance = performance
        self._process = process

    def collect(self) -> Iterator[Metric]:
        """Called by the registry on every scrape."""
        yield from self._health()
        yield from self._nodes()
        yield from self._operations()
        lag = GaugeMetricFamily(
            "huddle_event_loop_lag_seconds", "Worst event-loop wake-up delay of the last ~10 seconds."
        )
        if self._process.max_lag_ms is not None:
            lag.add_metric([], self._process.max_lag_ms / 1000)
        yield lag

    def _health(self) -> Iterator[Metric]:
        report = self._report()
        overall = GaugeMetricFamily(
            "huddle_health_overall", "Overall level: 0 healthy, 1 warning, 2 critical, 3 down."
        )
        components = GaugeMetricFamily(
            "huddle_health_component",
            "Component level: -1 not configured, 0 healthy, 1 warning, 2 critical, 3 down.",
            labels=["component"],
        )
        values = GaugeMetricFamily(
            "huddle_health_check_value", "Observed value of each numeric check.", labels=["check", "unit"]
        )
        levels = GaugeMetricFamily(
            "huddle_health_check_level", "Level of each check (0 healthy .. 3 down).", labels=["check"]
        )
        alerts = GaugeMetricFamily("huddle_health_active_alerts", "Checks that are not healthy now.")
        if report is not None:
            overall.add_metric([], LEVEL_VALUES[report.overall])
            for name, component in report.components.items():
                components.add_metric([name], LEVEL_VALUES[component.level])
            for key, entries in report.checks.items():
                for check in entries:
                    levels.add_metric([key], LEVEL_VALUES[check.level])
                    value = check.observed_value
                    if isinstance(value, int | float):  # bools are ints: up/down checks export as 1/0
                        values.add_metric([key, check.observed_unit or ""], float(value))
            alerts.add_metric([], len(report.alerts))
        yield from (overall, components, values, levels, alerts)

    def _nodes(self) -> Iterator[Metric]:
        """Per-node gauges (label ``node`` = host:port) of the Redis Cluster nodes the last check asked."""
        report = self._report()
        redis = report.components.get("redis") if report is not None else None
        nodes = redis.details.get("nodes", []) if redis is not None else []
        labels = ["node", "type"]
        up = GaugeMetricFamily(
            "huddle_redis_node_up", "1 if the node answered the last check.", labels=labels
        )
        families = {
            "response_time_ms": GaugeMetricFamily(
                "huddle_redis_node_response_time_seconds", "PING round trip of the node.", labels=labels
            ),
            "used_memory_bytes": GaugeMetricFamily(
                "huddle_redis_node_used_memory_bytes", "Memory the node uses.", labels=labels
            ),
            "memory_utilization": GaugeMetricFamily(
                "huddle_redis_node_memory_utilization_ratio",
                "used_memory / maxmemory of the node.",
                labels=labels,
            ),
            "connected_clients": GaugeMetricFamily(
                "huddle_redis_node_connected_clients", "Clients connected to the node.", labels=labels
            ),
            "slots": GaugeMetricFamily(
                "huddle_redis_node_slots", "Hash slots the primary serves.", labels=labels
            ),
        }
        for node in nodes:
            key = [str(node.get("node")), str(node.get("type"))]
            up.add_metric(key, 1.0 if node.get("reachable") else 0.0)
            for field, family in families.items():
                value = node.get(field)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    family.add_metric(key, value / 1000 if field == "response_time_ms" else float(value))
        yield up
        yield from families.values()

    def _operations(self) -> Iterator[Metric]:
        latency = GaugeMetricFamily(
            "huddle_operation_latency_seconds",
            "Latency percentiles of operations over a sliding window.",
            labels=["operation", "window", "quantile"],
        )
        throughput = GaugeMetricFamily(
            "huddle_operation_throughput_per_second",
            "Operations per second over a sliding window.",
            labels=["operation", "window"],
        )
        errors = GaugeMetricFamily(
            "huddle_operation_error_ratio",
            "Failed / all operations over a sliding window.",
            labels=["operation", "window"],
        )
        performance = self._performance
        for operation in ["all", *sorted(performance.operations)]:
            for name, seconds in WINDOWS.items():
                if operation == "all":
                    figures = performance.total(seconds)
                else:
                    figures = performance.operations[operation].figures(seconds)
                throughput.add_metric([operation, name], figures.throughput_per_second)
                errors.add_metric([operation, name], figures.error_rate)
                for quantile, value in (
                    ("0.5", figures.p50_ms),
                    ("0.95", figures.p95_ms),
                    ("0.99", figures.p99_ms),
                ):
                    if value is not None:
                        latency.add_metric([operation, name, quantile], value / 1000)
        yield from (latency, throughput, errors)


def attach(
    registry: CollectorRegistry,
    report: Callable[[], HealthReport | None],
    performance: PerformanceMonitor,
    process: ProcessMonitor,
) -> None:
    """Register the process collector and the health collector on ``registry``."""
    ProcessCollector(registry=registry)
    registry.register(HealthCollector(report, performance, process))


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format."""
    return bytes(generate_latest(registry))
