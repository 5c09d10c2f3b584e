"""Proxy and crash fault runs: a private Redis behind a FaultProxy (cuts, delays, blackholes, resets) or killed
and restarted, while the workload (``workload.py``) writes; the history checked afterwards."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from huddle import EmbeddedRedis, SessionManagerConfig

from .history import HistoryReport
from .proxy import FaultProxy
from .workload import NAMESPACE, Load, run_workload


@dataclass(frozen=True)
class Scenario:
    """What to run: which faults, how often, how much load."""

    name: str
    faults: tuple[str, ...] = ("cut_request", "cut_reply", "delay", "reset")
    writers: int = 3
    min_faults: int = 100
    """Writers keep emitting until this many faults were injected (or ``max_seconds`` passed)."""
    max_seconds: float = 30.0
    concurrency: int = 3
    fault_gap: tuple[float, float] = (0.01, 0.05)
    """Seconds between two proxy faults (uniform)."""
    window: tuple[float, float] = (0.2, 0.8)
    """Length of delay / blackhole windows."""
    crash: str | None = None
    """'always' or 'everysec': SIGKILL and restart Redis (AOF with that fsync policy) during the run."""
    crash_gap: tuple[float, float] = (0.8, 1.5)
    seed: int = 1


@dataclass
class RunResult:
    """The checker's report plus the run's timing and the error names writers saw."""

    scenario: object
    """The scenario that ran (a ``Scenario`` here, a ``FailoverScenario`` in ``failover.py``)."""
    report: HistoryReport
    seconds: float
    errors: Counter[str]

    @property
    def name(self) -> str:
        """The scenario's name."""
        return str(getattr(self.scenario, "name", "?"))


async def _inject(
    scenario: Scenario, proxy: FaultProxy, server: EmbeddedRedis, workers: list[BaseProcess]
) -> Counter[str]:
    """Inject faults until ``min_faults`` were applied (or time ran out)."""
    rng = random.Random(scenario.seed * 7919)
    crashes: Counter[str] = Counter()
    next_crash = time.monotonic() + rng.uniform(*scenario.crash_gap)
    deadline = time.monotonic() + scenario.max_seconds

    def done() -> bool:
        applied = sum(proxy.stats.applied.values()) + sum(crashes.values())
        return applied >= scenario.min_faults or time.monotonic() > deadline

    while not done() and any(worker.is_alive() for worker in workers):
        if scenario.faults:
            kind = rng.choice(scenario.faults)
            window = rng.uniform(*scenario.window)
            proxy.inject(kind, window)
            await asyncio.sleep(
                window if kind in ("delay", "blackhole") else rng.uniform(*scenario.fault_gap)
            )
        else:
            await asyncio.sleep(0.05)
        if scenario.crash and time.monotonic() >= next_crash:
            await asyncio.to_thread(server.stop, kill=True, cleanup=False)
            crashes[f"sigkill_{scenario.crash}"] += 1
            await asyncio.sleep(rng.uniform(0.05, 0.3))
            await asyncio.to_thread(server.start)
            next_crash = time.monotonic() + rng.uniform(*scenario.crash_gap)
    return proxy.stats.applied + crashes


async def run_scenario(scenario: Scenario) -> RunResult:
    """Run one scenario end to end and return the checked history."""
    started = time.perf_counter()
    extra = ["--appendfsync", scenario.crash] if scenario.crash else []
    server = EmbeddedRedis(appendonly=scenario.crash is not None, extra_args=extra)
    direct_config = SessionManagerConfig(
        redis_url=server.url, namespace=NAMESPACE, max_events_per_session=100_000, checkpoint_interval=25,
        retry_attempts=5, retry_backoff_base=0.05,
    )  # fmt: skip

    async def heal() -> None:
        proxy.heal()
        if not server.running:
            await asyncio.to_thread(server.start)

    load = Load(
        writers=scenario.writers, concurrency=scenario.concurrency, seed=scenario.seed,
        allow_loss=scenario.crash == "everysec",
    )  # fmt: skip
    await asyncio.to_thread(server.start)
    proxy = FaultProxy(server.port, seed=scenario.seed)
    try:
        proxy.start()
        result = await run_workload(
            direct_config,
            proxy.url,
            lambda workers: _inject(scenario, proxy, server, workers),
            load,
            heal=heal,
        )
        return RunResult(scenario, result.report, time.perf_counter() - started, result.errors)
    finally:
        proxy.stop()
        await asyncio.to_thread(server.stop)
