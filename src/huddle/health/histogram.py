"""A latency histogram with bounded memory: log-linear buckets over integer microseconds (HDR-style).

Values below 64 us are counted exactly; above, each power of two is split into 64 equal buckets, so a bucket is
at most 1/64 (1.6 %) of its value wide and a percentile (the bucket midpoint) is within 0.8 % of a true sample.
One hour in microseconds needs fewer than 1,800 distinct buckets, whatever the number of samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

SUB_BITS = 6
SUB = 1 << SUB_BITS  # 64 sub-buckets per power of two
MAX_US = 1 << 40  # ~12.7 days: larger values are clamped (and counted)


def bucket_of(us: int) -> int:
    """Bucket index of a non-negative integer number of microseconds."""
    if us < SUB:
        return us if us > 0 else 0
    shift = us.bit_length() - SUB_BITS - 1
    return SUB * shift + (us >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """``[low, high)`` in microseconds of bucket ``index``."""
    if index < SUB:
        return index, index + 1
    shift = index // SUB - 1
    mantissa = index - SUB * shift
    return mantissa << shift, (mantissa + 1) << shift


def bucket_value(index: int) -> float:
    """The value a bucket stands for (exact below 64 us, else the midpoint), in microseconds."""
    low, high = bucket_bounds(index)
    return float(low) if high - low == 1 else (low + high) / 2


class LatencyHistogram:
    """Counts of durations in log-linear buckets, with exact count, sum, min and max."""

    __slots__ = ("buckets", "count", "max_us", "min_us", "sum_us")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.sum_us = 0
        self.min_us = 0
        self.max_us = 0

    def record_us(self, us: int) -> None:
        """Add one duration in microseconds (negative values count as 0)."""
        us = 0 if us < 0 else MAX_US if us > MAX_US else us
        index = bucket_of(us)
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1
        if self.count == 0 or us < self.min_us:
            self.min_us = us
        if us > self.max_us:
            self.max_us = us
        self.count += 1
        self.sum_us += us

    def record_seconds(self, seconds: float) -> None:
        """Add one duration in seconds."""
        self.record_us(int(seconds * 1_000_000))

    def merge(self, other: LatencyHistogram) -> None:
        """Add every sample of ``other`` to this histogram."""
        if other.count == 0:
            return
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.min_us = other.min_us if self.count == 0 else min(self.min_us, other.min_us)
        self.max_us = max(self.max_us, other.max_us)
        self.count += other.count
        self.sum_us += other.sum_us

    @classmethod
    def merged(cls, parts: Iterable[LatencyHistogram]) -> LatencyHistogram:
        """A new histogram holding the samples of all ``parts``."""
        total = cls()
        for part in parts:
            total.merge(part)
        return total

    def percentile_us(self, q: float) -> float | None:
        """The ``q`` quantile (0 < q <= 1) in microseconds, None without samples."""
        if not 0 < q <= 1:
            raise ValueError(f"quantile must be in (0, 1], got {q}")
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(max(bucket_value(index), float(self.min_us)), float(self.max_us))
        return float(self.max_us)

    def percentiles_ms(self, *qs: float) -> list[float | None]:
        """Several quantiles in milliseconds, computed in one pass."""
        if self.count == 0:
            return [None for _ in qs]
        ranks = sorted((max(1, math.ceil(q * self.count)), i) for i, q in enumerate(qs))
        out: list[float | None] = [None] * len(qs)
        seen, pending = 0, 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            while pending < len(ranks) and seen >= ranks[pending][0]:
                value = min(max(bucket_value(index), float(self.min_us)), float(self.max_us))
                out[ranks[pending][1]] = value / 1000
                pending += 1
            if pending == len(ranks):
                break
        return out

    @property
    def mean_us(self) -> float | None:
        """Exact mean in microseconds, None without samples."""
        return self.sum_us / self.count if self.count else None
