"""One fault run: a private Redis behind a FaultProxy, writer processes, a state writer, a checkpointer and a
live subscriber; faults injected while they write; the history checked afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

from huddle import EmbeddedRedis, Event, SessionManager, SessionManagerConfig

from .history import CallRecord, HistoryReport, check_history
from .proxy import FaultProxy
from .writer import MAX_ATTEMPTS, error_name, writer_config, writer_main

NAMESPACE = "rel"


@dataclass(frozen=True)
class Scenario:
    """What to run: which faults, how often, how much load."""

    name: str
    faults: tuple[str, ...] = ("cut_request", "cut_reply", "delay", "reset")
    writers: int = 3
    calls_per_writer: int = 100_000
    """An upper bound: writers stop once ``min_faults`` faults were injected (or ``max_seconds`` passed)."""
    min_faults: int = 100
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

    scenario: Scenario
    report: HistoryReport
    seconds: float
    errors: Counter[str]


async def _retrying(call, rng: random.Random):  # type: ignore[no-untyped-def]
    errors: list[str] = []
    for attempt in range(MAX_ATTEMPTS * 2):
        try:
            return await call()
        except Exception as exc:  # retried until the faults stop
            errors.append(error_name(exc))
            await asyncio.sleep(min(0.02 * 2**attempt, 0.5) * rng.uniform(0.5, 1.5))
    raise RuntimeError(f"gave up after {errors}")


async def _state_writer(
    manager: SessionManager, sid: str, stop: asyncio.Event, records: list[CallRecord], rng: random.Random
) -> None:
    """Sequential state transitions s0 -> s1 -> ... (idempotency keys, retried); their seqs are checked too."""
    await _retrying(lambda: manager.join_session(sid, "stater"), rng)
    state = (await _retrying(lambda: manager.get_session(sid), rng)).state
    n = 0
    while not stop.is_set():
        key, target = f"stater-{n}", f"s{n}"
        event = {"type": "modified", "state_transition": {"from": state, "to": target}, "data": {"key": key}}
        errors: list[str] = []
        attempts = 0
        seq = None
        for attempt in range(MAX_ATTEMPTS):
            attempts += 1
            try:
                seq = await manager.emit_event(sid, event, "stater", idempotency_key=key)
                break
            except Exception as exc:  # recorded for the checker
                errors.append(error_name(exc))
                await asyncio.sleep(min(0.02 * 2**attempt, 0.5))
        records.append(CallRecord("stater", key, attempts, seq, errors))
        state = target if seq is not None else (await _retrying(lambda: manager.get_session(sid), rng)).state
        n += 1
        await asyncio.sleep(0.02)


async def _checkpointer(manager: SessionManager, sid: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(Exception):  # a checkpoint cut by a fault is simply tried again later
            await manager.checkpoint(sid, force_snapshot=True, reason="harness")
        await asyncio.sleep(0.25)


async def _inject(
    scenario: Scenario,
    proxy: FaultProxy,
    server: EmbeddedRedis,
    workers: list[BaseProcess],
    stop_path: Path,
    crashes: Counter[str],
) -> None:
    """Inject faults until ``min_faults`` were applied (or time ran out), then tell the writers to stop."""
    rng = random.Random(scenario.seed * 7919)
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
    await asyncio.to_thread(stop_path.touch)


def _load_records(workdir: Path) -> list[CallRecord]:
    records: list[CallRecord] = []
    for path in sorted(workdir.glob("w*.jsonl")):
        records += [CallRecord(**json.loads(line)) for line in path.read_text().splitlines()]
    return records


async def run_scenario(scenario: Scenario) -> RunResult:
    """Run one scenario end to end and return the checked history."""
    started = time.perf_counter()
    rng = random.Random(scenario.seed)
    extra = ["--appendfsync", scenario.crash] if scenario.crash else []
    server = EmbeddedRedis(appendonly=scenario.crash is not None, extra_args=extra)
    await asyncio.to_thread(server.start)
    proxy = FaultProxy(server.port, seed=scenario.seed).start()
    workdir = Path(tempfile.mkdtemp(prefix="huddle-faults-"))
    direct_config = SessionManagerConfig(
        redis_url=server.url, namespace=NAMESPACE, max_events_per_session=100_000, checkpoint_interval=25,
        retry_attempts=5, retry_backoff_base=0.05,
    )  # fmt: skip
    direct = SessionManager(direct_config)
    through = SessionManager(writer_config(proxy.url, NAMESPACE))
    stop = asyncio.Event()
    crashes: Counter[str] = Counter()
    stater_records: list[CallRecord] = []
    seen: list[Event] = []
    subscriber: asyncio.Task[None] | None = None
    try:
        sid = await _retrying(lambda: direct.create_session("owner"), rng)

        async def follow() -> None:
            async for event in through.subscribe(sid):
                seen.append(event)

        subscriber = asyncio.create_task(follow())
        ctx = mp.get_context("spawn")
        workers = [
            ctx.Process(
                target=writer_main,
                args=(
                    proxy.url,
                    NAMESPACE,
                    sid,
                    f"w{i}",
                    scenario.calls_per_writer,
                    scenario.concurrency,
                    str(workdir / f"w{i}.jsonl"),
                    scenario.seed * 100 + i,
                    str(workdir / "stop"),
                ),
            )
            for i in range(scenario.writers)
        ]
        for worker in workers:
            worker.start()
        async with asyncio.timeout(30):
            while not seen:
                if subscriber.done():
                    await subscriber  # raises what ended it
                await asyncio.sleep(0.01)
        side_tasks = [
            asyncio.create_task(_state_writer(through, sid, stop, stater_records, rng)),
            asyncio.create_task(_checkpointer(through, sid, stop)),
        ]
        async with asyncio.timeout(60):  # faults start once every writer has joined (spawning takes a while)
            while len((await direct.get_session(sid)).agents) < scenario.writers + 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await _inject(scenario, proxy, server, workers, workdir / "stop", crashes)
        for worker in workers:
            await asyncio.to_thread(worker.join, 120)
        stop.set()
        await asyncio.gather(*side_tasks)
        proxy.heal()
        if not server.running:
            await asyncio.to_thread(server.start)
        await _retrying(lambda: direct.complete_session(sid, "owner"), rng)
        await asyncio.wait_for(subscriber, timeout=60)
        exitcodes = [worker.exitcode for worker in workers]

        records = stater_records + await asyncio.to_thread(_load_records, workdir)
        events = await direct.get_events(sid)
        document = await direct.get_session(sid)
        checkpoints = await direct.get_checkpoints(sid)
        report = check_history(
            records, events, last_seq=document.last_seq, subscriber=seen, checkpoints=checkpoints,
            initial_state=direct_config.initial_state, allow_loss=scenario.crash == "everysec",
        )  # fmt: skip
        if exitcodes != [0] * len(workers):
            report.fail(f"writer exit codes {exitcodes}")
        report.faults = dict(proxy.stats.applied + crashes)
        errors = Counter(name for record in records for name in record.errors)
        untyped = {name: n for name, n in errors.items() if name.startswith("UNTYPED:")}
        if untyped:
            report.fail(f"untyped errors reached the caller: {untyped}")
        return RunResult(scenario, report, time.perf_counter() - started, errors)
    finally:
        stop.set()
        if subscriber is not None and not subscriber.done():
            subscriber.cancel()
            await asyncio.gather(subscriber, return_exceptions=True)
        await through.close()
        await direct.close()
        proxy.stop()
        await asyncio.to_thread(server.stop)
