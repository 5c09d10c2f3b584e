"""A writer process: emits events with idempotency keys (through a fault proxy or to a topology), retrying each
errored call with the same key, and writes one ``CallRecord`` per call as a JSON line."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huddle import HuddleError, SessionManager, SessionManagerConfig
from huddle.errors import StateConflictError

from .history import CallRecord

MAX_ATTEMPTS = 12


@dataclass(frozen=True)
class WriterPlan:
    """What one writer process does (picklable: it crosses the spawn boundary)."""

    url: str
    namespace: str
    session_id: str
    agent: str
    out: str
    seed: int
    stop_path: str
    concurrency: int = 3
    max_calls: int | None = None
    """None: keep emitting until ``stop_path`` exists (runs are sized by faults, never by how fast emits are)."""
    max_attempts: int = MAX_ATTEMPTS
    min_replicas: int = 0
    pace: float = 0.0
    """Seconds each lane sleeps between calls (long runs stay under the 100,000 events a session keeps)."""
    socket_timeout: float = 1.0


def writer_config(url: str, namespace: str, socket_timeout: float = 1.0) -> SessionManagerConfig:
    """Short timeouts by default so a blackhole is noticed within a second; redis-py's own retries stay on."""
    return SessionManagerConfig(
        redis_url=url,
        namespace=namespace,
        socket_timeout=socket_timeout,
        connect_timeout=1.0,
        retry_attempts=1,
        retry_backoff_base=0.02,
        retry_backoff_cap=0.2,
        max_events_per_session=100_000,
        checkpoint_interval=25,
    )


def _stopped(path: str) -> bool:
    """One stat() per call: cheap next to a Redis round trip, so no thread hop."""
    return os.path.exists(path)


def error_name(exc: BaseException) -> str:
    """The class name, prefixed ``UNTYPED:`` unless it is a ``HuddleError`` (the checker counts those)."""
    name = type(exc).__name__
    if isinstance(exc, HuddleError):
        return name
    frames = traceback.extract_tb(exc.__traceback__)
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in frames[-3:][::-1])
    return f"UNTYPED:{name}: {str(exc)[:160]} (at {where})"


def backoff(attempt: int, rng: random.Random) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential, capped at 0.5 s, jittered."""
    return min(0.02 * 2.0 ** min(attempt, 10), 0.5) * rng.uniform(0.5, 1.5)


async def with_retries(
    call: Any, errors: list[str], rng: random.Random, max_attempts: int = MAX_ATTEMPTS
) -> Any:
    """Run ``call()`` until it succeeds or ``max_attempts`` tries failed; the errors land in ``errors``.

    A ``StateConflictError`` is final (the state moved on: retrying the same transition cannot succeed)."""
    for attempt in range(max_attempts):
        try:
            return await call()
        except StateConflictError as exc:
            errors.append(error_name(exc))
            return None
        except Exception as exc:  # every error is recorded; the checker judges them
            errors.append(error_name(exc))
            await asyncio.sleep(backoff(attempt, rng))
    return None


async def emit_calls(manager: SessionManager, plan: WriterPlan) -> list[CallRecord]:
    """Emits split over ``plan.concurrency`` lanes until the stop file exists (or ``max_calls`` were made)."""
    rng = random.Random(plan.seed)
    records: list[CallRecord] = []
    numbers = itertools.count() if plan.max_calls is None else iter(range(plan.max_calls))

    async def lane() -> None:
        for i in numbers:  # shared by the lanes: every key is used once
            if _stopped(plan.stop_path):
                return  # the scenario has injected its faults
            key = f"{plan.agent}-{i}"
            errors: list[str] = []
            attempts = 0

            async def once(key: str = key) -> int:
                nonlocal attempts
                attempts += 1
                event = {"type": "modified", "data": {"key": key, "writer": plan.agent}}
                return await manager.emit_event(
                    plan.session_id, event, plan.agent, idempotency_key=key, min_replicas=plan.min_replicas
                )

            seq = await with_retries(once, errors, rng, plan.max_attempts)
            records.append(CallRecord(plan.agent, key, attempts, seq, errors))
            if plan.pace:
                await asyncio.sleep(plan.pace)

    await asyncio.gather(*(lane() for _ in range(plan.concurrency)))
    return records


def writer_main(plan: WriterPlan) -> None:
    """Process entry point: join (retried), emit, write the records to ``plan.out``."""

    async def run() -> list[CallRecord]:
        rng = random.Random(plan.seed)
        manager = SessionManager(writer_config(plan.url, plan.namespace, plan.socket_timeout))
        try:
            join_errors: list[str] = []
            await with_retries(manager.connect, join_errors, rng, plan.max_attempts)
            await with_retries(
                lambda: manager.join_session(plan.session_id, plan.agent), join_errors, rng, plan.max_attempts
            )
            return await emit_calls(manager, plan)
        finally:
            await manager.close()

    records = asyncio.run(run())
    Path(plan.out).write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
