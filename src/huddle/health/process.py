"""ProcessMonitor: resident memory, CPU, threads and file descriptors of this process, and event-loop lag."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque

import psutil

from .report import ProcessReport

LAG_HISTORY_SECONDS = 10.0


class ProcessMonitor:
    """Measures this process; ``start()`` runs a probe task that measures how late the event loop wakes up."""

    def __init__(self, lag_interval: float = 0.5) -> None:
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)  # the first call only sets the baseline
        self._started = time.monotonic()
        self._interval = lag_interval
        size = max(2, int(LAG_HISTORY_SECONDS / lag_interval))
        self._lags: deque[float] = deque(maxlen=size)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop-lag probe (idempotent); it runs until ``stop()``."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._probe(), name="huddle-loop-lag")

    async def stop(self) -> None:
        """Stop the probe and wait for it (idempotent)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            self._lags.append(max(0.0, loop.time() - expected))

    @property
    def last_lag_ms(self) -> float | None:
        """How late the last probe woke up, in milliseconds (None before the first probe)."""
        return self._lags[-1] * 1000 if self._lags else None

    @property
    def max_lag_ms(self) -> float | None:
        """The largest lag of the last ~10 seconds, in milliseconds."""
        return max(self._lags) * 1000 if self._lags else None

    @property
    def uptime_seconds(self) -> float:
        """Seconds since this monitor was created."""
        return time.monotonic() - self._started

    def report(self) -> ProcessReport:
        """Current figures, read from the OS now."""
        process = self._process
        with process.oneshot():
            rss = int(process.memory_info().rss)
            cpu = float(process.cpu_percent(None))
            threads = int(process.num_threads())
            try:
                fds: int | None = int(process.num_fds())
            except (AttributeError, psutil.Error):
                fds = None
        return ProcessReport(
            pid=process.pid,
            rss_bytes=rss,
            cpu_percent=cpu,
            threads=threads,
            open_fds=fds,
            event_loop_lag_ms=self.last_lag_ms,
            event_loop_lag_max_ms=self.max_lag_ms,
            uptime_seconds=self.uptime_seconds,
        )
