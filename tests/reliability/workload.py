"""The load every fault run puts on one session: writer processes, a state writer, a checkpointer and a live
subscriber; a fault injector runs meanwhile; afterwards the history checker judges what was stored and seen."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import random
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TypeVar

from huddle import Event, EventsRolledBackError, SessionManager, SessionManagerConfig

from .history import CallRecord, HistoryReport, check_history
from .writer import MAX_ATTEMPTS, WriterPlan, error_name, with_retries, writer_config, writer_main

NAMESPACE = "rel"
T = TypeVar("T")

Injector = Callable[[list[BaseProcess]], Awaitable[Counter[str]]]
"""Injects faults while the writers run (the processes, to notice if they all died); returns the faults
applied. The workload tells the writers to stop once it returns."""


@dataclass(frozen=True)
class Load:
    """How much load: writer processes, lanes per writer, retry budget, WAIT for replicas."""

    writers: int = 3
    concurrency: int = 3
    max_attempts: int = MAX_ATTEMPTS
    min_replicas: int = 0
    seed: int = 1
    pace: float = 0.0
    """Seconds each writer lane sleeps between calls (see ``WriterPlan.pace``)."""
    socket_timeout: float = 1.0
    """Of the writers and the subscriber (short: a blackhole is noticed within a second)."""
    allow_loss: bool = False
    """Count acknowledged-but-missing events without calling them a problem (what Redis itself may lose)."""


@dataclass
class WorkloadResult:
    """The checker's report plus the error names callers saw."""

    report: HistoryReport
    errors: Counter[str]


async def retrying(call: Callable[[], Awaitable[T]], rng: random.Random) -> T:
    """Harness calls (create, read, complete) retried until the faults stop (about a minute at most)."""
    errors: list[str] = []
    for attempt in range(MAX_ATTEMPTS * 4):
        try:
            return await call()
        except Exception as exc:  # retried until the faults stop
            errors.append(error_name(exc))
            await asyncio.sleep(min(0.02 * 2**attempt, 1.0) * rng.uniform(0.5, 1.5))
    raise RuntimeError(f"gave up after {errors}")


async def _state_writer(
    manager: SessionManager, sid: str, load: Load, stop: asyncio.Event, records: list[CallRecord]
) -> None:
    """Sequential state transitions s0 -> s1 -> ... (idempotency keys, retried); their seqs are checked too."""
    rng = random.Random(load.seed * 31)
    await retrying(lambda: manager.join_session(sid, "stater"), rng)
    state = (await retrying(lambda: manager.get_session(sid), rng)).state
    n = 0
    while not stop.is_set():
        key, target = f"stater-{n}", f"s{n}"
        event: dict[str, object] = {
            "type": "modified",
            "state_transition": {"from": state, "to": target},
            "data": {"key": key},
        }
        errors: list[str] = []
        attempts = 0

        async def once(event: dict[str, object] = event, key: str = key) -> int:
            nonlocal attempts
            attempts += 1
            return await manager.emit_event(
                sid, event, "stater", idempotency_key=key, min_replicas=load.min_replicas
            )

        seq = await with_retries(once, errors, rng, load.max_attempts)
        records.append(CallRecord("stater", key, attempts, seq, errors))
        # A failed transition (or one lost in a failover): continue from what the log says.
        state = target if seq is not None else (await retrying(lambda: manager.get_session(sid), rng)).state
        n += 1
        await asyncio.sleep(0.02)


async def _checkpointer(manager: SessionManager, sid: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(Exception):  # a checkpoint cut by a fault is simply tried again later
            await manager.checkpoint(sid, force_snapshot=True, reason="harness")
        await asyncio.sleep(0.25)


def _load_records(workdir: Path) -> list[CallRecord]:
    records: list[CallRecord] = []
    for path in sorted(workdir.glob("w*.jsonl")):
        records += [CallRecord(**json.loads(line)) for line in path.read_text().splitlines()]
    return records


async def run_workload(
    direct_config: SessionManagerConfig,
    through_url: str,
    inject: Injector,
    load: Load,
    *,
    session_id: str | None = None,
    heal: Callable[[], Awaitable[None]] | None = None,
) -> WorkloadResult:
    """Create a session (``session_id`` if given) with ``direct_config``, put the load on it through
    ``through_url``, run ``inject``, stop, ``heal``, complete the session and check the history."""
    rng = random.Random(load.seed)
    workdir = Path(tempfile.mkdtemp(prefix="huddle-faults-"))
    stop_path = workdir / "stop"
    direct = SessionManager(direct_config)
    through = SessionManager(writer_config(through_url, direct_config.namespace, load.socket_timeout))
    stop = asyncio.Event()
    stater_records: list[CallRecord] = []
    seen: list[Event] = []
    subscriber_errors: Counter[str] = Counter()
    retracted = [0]  # events the subscriber delivered, then was told a failover replaced
    subscriber: asyncio.Task[None] | None = None
    side_tasks: list[asyncio.Task[None]] = []
    workers: list[BaseProcess] = []
    try:
        sid = await retrying(lambda: direct.create_session("owner", session_id=session_id), rng)

        async def follow() -> None:
            # An application would subscribe again after an error: from the next seq, or from the first seq a
            # failover replaced (EventsRolledBackError says which). Errors are recorded; untyped is a problem.
            while True:
                try:
                    async for event in through.subscribe(sid, from_seq=len(seen) + 1):
                        seen.append(event)
                    return
                except EventsRolledBackError as exc:
                    first = int(exc.details["first_changed_seq"])
                    subscriber_errors["EventsRolledBackError"] += 1
                    retracted[0] += len(seen) - first + 1
                    del seen[first - 1 :]
                except Exception as exc:  # recorded; the checker judges it
                    subscriber_errors[error_name(exc)] += 1
                    if sum(subscriber_errors.values()) > 100:
                        raise
                    await asyncio.sleep(0.1)

        subscriber = asyncio.create_task(follow())
        ctx = mp.get_context("spawn")
        for i in range(load.writers):
            plan = WriterPlan(
                url=through_url, namespace=direct_config.namespace, session_id=sid, agent=f"w{i}",
                out=str(workdir / f"w{i}.jsonl"), seed=load.seed * 100 + i, stop_path=str(stop_path),
                concurrency=load.concurrency, max_attempts=load.max_attempts, min_replicas=load.min_replicas, pace=load.pace,
                socket_timeout=load.socket_timeout,
            )  # fmt: skip
            workers.append(ctx.Process(target=writer_main, args=(plan,)))
        for worker in workers:
            worker.start()
        async with asyncio.timeout(30):
            while not seen:
                if subscriber.done():
                    await subscriber  # raises what ended it
                await asyncio.sleep(0.01)
        side_tasks = [
            asyncio.create_task(_state_writer(through, sid, load, stop, stater_records)),
            asyncio.create_task(_checkpointer(through, sid, stop)),
        ]
        async with asyncio.timeout(60):  # faults start once every writer has joined (spawning takes a while)
            while len((await direct.get_session(sid)).agents) < load.writers + 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        try:
            faults = await inject(workers)
        finally:
            await asyncio.to_thread(stop_path.touch)
        for worker in workers:
            await asyncio.to_thread(worker.join, 120)
        stop.set()
        await asyncio.gather(*side_tasks)
        if heal is not None:
            await heal()
        await retrying(lambda: direct.complete_session(sid, "owner"), rng)
        await asyncio.wait_for(subscriber, timeout=60)
        exitcodes = [worker.exitcode for worker in workers]

        records = stater_records + await asyncio.to_thread(_load_records, workdir)
        events = await direct.get_events(sid)
        document = await direct.get_session(sid)
        checkpoints = await direct.get_checkpoints(sid)
        report = check_history(
            records, events, last_seq=document.last_seq, subscriber=seen, checkpoints=checkpoints,
            initial_state=direct_config.initial_state, allow_loss=load.allow_loss,
        )  # fmt: skip
        if exitcodes != [0] * len(workers):
            report.fail(f"writer exit codes {exitcodes}")
        report.faults = dict(faults)
        report.subscriber_rolled_back = retracted[0]
        errors = Counter(name for record in records for name in record.errors)
        errors.update({f"subscriber {name}": n for name, n in subscriber_errors.items()})
        untyped = {name: n for name, n in errors.items() if "UNTYPED:" in name}
        if untyped:
            report.fail(f"untyped errors reached the caller: {untyped}")
        return WorkloadResult(report, errors)
    finally:
        stop.set()
        stop_path.touch()
        for task in [*side_tasks, *([subscriber] if subscriber is not None else [])]:
            if not task.done():
                task.cancel()
        await asyncio.gather(*side_tasks, *([subscriber] if subscriber else []), return_exceptions=True)
        for worker in workers:
            await asyncio.to_thread(worker.join, 30)
            if worker.is_alive():
                worker.kill()
        await through.close()
        await direct.close()
