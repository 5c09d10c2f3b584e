"""Histogram percentiles against known distributions, sliding windows, the performance monitor."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client import CollectorRegistry

from huddle.health import LatencyHistogram, PerformanceMonitor, SlidingWindow
from huddle.health.histogram import bucket_bounds, bucket_of


class FakeClock:
    """A monotonic clock the test moves by hand (windows are about time, not about Redis)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def exact_percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[max(1, math.ceil(q * len(ordered))) - 1])


def test_bucket_bounds_contain_the_value_and_are_at_most_one_64th_wide() -> None:
    for us in [0, 1, 63, 64, 65, 127, 128, 1000, 123_456, 3_600_000_000]:
        low, high = bucket_bounds(bucket_of(us))
        assert low <= us < high
        assert (high - low) <= max(1, low / 64)


def test_percentiles_of_a_uniform_distribution_are_within_one_percent() -> None:
    histogram = LatencyHistogram()
    values = list(range(1, 100_001))
    for us in values:
        histogram.record_us(us)
    for q in (0.5, 0.95, 0.99):
        measured = histogram.percentile_us(q)
        assert measured is not None
        assert measured == pytest.approx(exact_percentile(values, q), rel=0.01)


def test_percentiles_of_a_lognormal_distribution_are_within_one_percent() -> None:
    rng = random.Random(7)
    values = [max(1, int(rng.lognormvariate(math.log(2000), 1.0))) for _ in range(50_000)]
    histogram = LatencyHistogram()
    for us in values:
        histogram.record_us(us)
    p50, p95, p99 = histogram.percentiles_ms(0.5, 0.95, 0.99)
    assert p50 == pytest.approx(exact_percentile(values, 0.5) / 1000, rel=0.01)
    assert p95 == pytest.approx(exact_percentile(values, 0.95) / 1000, rel=0.01)
    assert p99 == pytest.approx(exact_percentile(values, 0.99) / 1000, rel=0.01)
    assert histogram.mean_us == pytest.approx(sum(values) / len(values))
    assert histogram.min_us == min(values) and histogram.max_us == max(values)


def test_histogram_memory_is_bounded_whatever_the_number_of_samples() -> None:
    rng = random.Random(1)
    histogram = LatencyHistogram()
    for _ in range(200_000):
        histogram.record_us(int(10 ** rng.uniform(0, 9.6)))  # 1 us .. ~1 hour
    assert histogram.count == 200_000
    assert len(histogram.buckets) < 2_000


def test_merged_histograms_equal_one_histogram_of_all_samples() -> None:
    rng = random.Random(3)
    values = [rng.randint(1, 500_000) for _ in range(5_000)]
    whole, left, right = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for i, us in enumerate(values):
        whole.record_us(us)
        (left if i % 2 else right).record_us(us)
    merged = LatencyHistogram.merged([left, right])
    assert merged.buckets == whole.buckets
    assert merged.percentiles_ms(0.5, 0.99) == whole.percentiles_ms(0.5, 0.99)


def test_empty_histogram_has_no_percentiles() -> None:
    assert LatencyHistogram().percentile_us(0.5) is None
    assert LatencyHistogram().percentiles_ms(0.5, 0.99) == [None, None]


def test_window_throughput_counts_only_the_last_minute() -> None:
    clock = FakeClock()
    window = SlidingWindow(clock=clock)
    for _ in range(120):
        window.record(0.002)
    clock.now += 120  # two minutes later: these operations left the 1-minute window but not the 5-minute one
    for _ in range(30):
        clock.now += 1
        window.record(0.004)
    minute, five = window.figures(60), window.figures(300)
    assert minute.operations == 30
    assert five.operations == 150
    assert minute.p50_ms == pytest.approx(4.0, rel=0.01)
    assert minute.throughput_per_second == pytest.approx(30 / minute.covered_seconds)
    assert 55 <= minute.covered_seconds <= 60


def test_window_error_rate_is_errors_over_operations_in_the_window() -> None:
    clock = FakeClock()
    window = SlidingWindow(clock=clock)
    for i in range(100):
        window.record(0.001, ok=i % 4 != 0)
    assert window.figures(60).error_rate == pytest.approx(0.25)
    clock.now += 400
    assert window.figures(60).operations == 0
    assert window.figures(60).error_rate == 0.0


def test_monitor_keeps_figures_per_operation_and_in_total() -> None:
    monitor = PerformanceMonitor(CollectorRegistry(), clock=FakeClock())
    for _ in range(10):
        monitor.observe("emit", 0.001, True)
    monitor.observe("create", 0.010, False)
    monitor.record_response_time(25.0)
    monitor.record_error()
    report = monitor.report()
    assert report.operations["emit"]["1m"].operations == 10
    assert report.operations["create"]["1m"].errors == 1
    assert report.operations["custom"]["1m"].operations == 2
    assert report.operations["custom"]["1m"].errors == 1
    assert report.windows["1m"].operations == 13
    assert report.error_rate == pytest.approx(2 / 13)
    assert report.lifetime_operations == 13 and report.lifetime_errors == 2


def test_monitor_bounds_the_number_of_operation_names() -> None:
    monitor = PerformanceMonitor(CollectorRegistry(), max_operations=3)
    for i in range(10):
        monitor.observe(f"op{i}", 0.001, True)
    assert set(monitor.operations) == {"op0", "op1", "op2", "other"}
    assert monitor.operations["other"].figures(60).operations == 7
