"""Sliding time windows of operations: count, errors and a latency histogram per time slot.

A ring of fixed-length slots (5 s by default) covers the longest window (5 min); a window's figures merge the
slots that fall inside it, so throughput and error rate describe the last minute or five, never the lifetime.
Memory is bounded by the number of slots times the (bounded) histogram size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .histogram import LatencyHistogram

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class WindowFigures:
    """What happened inside one window."""

    window_seconds: float
    covered_seconds: float
    operations: int
    errors: int
    timed: int
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @property
    def throughput_per_second(self) -> float:
        """Operations per second over the part of the window that has been observed."""
        return self.operations / self.covered_seconds if self.covered_seconds > 0 else 0.0

    @property
    def error_rate(self) -> float:
        """Failed operations / all operations in the window (0 when there were none)."""
        return self.errors / self.operations if self.operations else 0.0


class _Slot:
    __slots__ = ("errors", "histogram", "number", "operations")

    def __init__(self) -> None:
        self.number = -1
        self.operations = 0
        self.errors = 0
        self.histogram = LatencyHistogram()

    def reset(self, number: int) -> None:
        self.number = number
        self.operations = 0
        self.errors = 0
        self.histogram = LatencyHistogram()


class SlidingWindow:
    """Operations recorded into time slots; ``figures(window)`` summarises the last ``window`` seconds."""

    def __init__(
        self, *, horizon: float = 300.0, slot_seconds: float = 5.0, clock: Clock | None = None
    ) -> None:
        if slot_seconds <= 0 or horizon < slot_seconds:
            raise ValueError("need 0 < slot_seconds <= horizon")
        self.slot_seconds = slot_seconds
        self.horizon = horizon
        self._clock = clock or time.monotonic
        self._started = self._clock()
        # One slot more than the horizon needs: the current slot is only partly elapsed.
        self._slots = [_Slot() for _ in range(int(horizon // slot_seconds) + 1)]

    def _slot(self, now: float) -> _Slot:
        number = int(now // self.slot_seconds)
        slot = self._slots[number % len(self._slots)]
        if slot.number != number:
            slot.reset(number)
        return slot

    def record(self, seconds: float | None, ok: bool = True) -> None:
        """Count one operation; ``seconds`` is its duration (None when it was not timed)."""
        slot = self._slot(self._clock())
        slot.operations += 1
        if not ok:
            slot.errors += 1
        if seconds is not None:
            slot.histogram.record_us(int(seconds * 1_000_000))

    def _included(self, window: float) -> tuple[list[_Slot], float, float]:
        window = min(window, self.horizon)
        now = self._clock()
        current = int(now // self.slot_seconds)
        oldest = current - int(window // self.slot_seconds) + 1
        if window % self.slot_seconds:
            oldest -= 1
        included = [slot for slot in self._slots if oldest <= slot.number <= current]
        covered = max(now - max(oldest * self.slot_seconds, self._started), 0.0)
        return included, covered, window

    def figures(self, window: float) -> WindowFigures:
        """Counts, rates and latency percentiles of the last ``window`` seconds (at most the horizon)."""
        return combined([self], window)


def combined(windows: list[SlidingWindow], window: float) -> WindowFigures:
    """The figures of several windows (same clock and slot length) taken together."""
    slots: list[_Slot] = []
    covered, length = 0.0, window
    for part in windows:
        included, part_covered, length = part._included(window)
        slots.extend(included)
        covered = max(covered, part_covered)
    histogram = LatencyHistogram.merged(slot.histogram for slot in slots)
    p50, p95, p99 = histogram.percentiles_ms(0.5, 0.95, 0.99)
    mean = histogram.mean_us
    return WindowFigures(
        window_seconds=length,
        covered_seconds=covered,
        operations=sum(slot.operations for slot in slots),
        errors=sum(slot.errors for slot in slots),
        timed=histogram.count,
        mean_ms=mean / 1000 if mean is not None else None,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=histogram.max_us / 1000 if histogram.count else None,
    )
