"""A writer process: emits events with idempotency keys through the fault proxy, retrying each errored call
with the same key, and writes one ``CallRecord`` per call as a JSON line."""

from __future__ import annotations

import asyncio
import json
import os
import random
from pathlib import Path
from typing import Any

from huddle import HuddleError, SessionManager, SessionManagerConfig

from .history import CallRecord

MAX_ATTEMPTS = 12


def writer_config(url: str, namespace: str) -> SessionManagerConfig:
    """Short timeouts so a blackhole is noticed within a second; redis-py's own retries stay on."""
    return SessionManagerConfig(
        redis_url=url,
        namespace=namespace,
        socket_timeout=1.0,
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
    return name if isinstance(exc, HuddleError) else f"UNTYPED:{name}: {str(exc)[:160]}"


async def with_retries(call: Any, errors: list[str], rng: random.Random) -> Any:
    """Run ``call()`` until it succeeds or MAX_ATTEMPTS tries failed; the errors land in ``errors``."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            return await call()
        except Exception as exc:  # every error is recorded; the checker judges them
            errors.append(error_name(exc))
            await asyncio.sleep(min(0.02 * 2**attempt, 0.5) * rng.uniform(0.5, 1.5))
    return None


async def emit_calls(
    manager: SessionManager,
    session_id: str,
    agent: str,
    count: int,
    concurrency: int,
    seed: int,
    stop_path: str | None = None,
) -> list[CallRecord]:
    """Up to ``count`` emits split over ``concurrency`` tasks, until ``stop_path`` exists; one record per call."""
    rng = random.Random(seed)
    records: list[CallRecord] = []

    async def lane(lane_no: int) -> None:
        for i in range(lane_no, count, concurrency):
            if stop_path is not None and _stopped(stop_path):
                return  # the scenario has injected its faults
            key = f"{agent}-{i}"
            errors: list[str] = []
            attempts = 0

            async def once(key: str = key) -> int:
                nonlocal attempts
                attempts += 1
                event = {"type": "modified", "data": {"key": key, "writer": agent}}
                return await manager.emit_event(session_id, event, agent, idempotency_key=key)

            seq = await with_retries(once, errors, rng)
            records.append(CallRecord(agent, key, attempts, seq, errors))

    await asyncio.gather(*(lane(n) for n in range(concurrency)))
    return records


def writer_main(
    url: str,
    namespace: str,
    session_id: str,
    agent: str,
    count: int,
    concurrency: int,
    out: str,
    seed: int,
    stop_path: str,
) -> None:
    """Process entry point: join (retried), emit, write the records to ``out``."""

    async def run() -> list[CallRecord]:
        rng = random.Random(seed)
        manager = SessionManager(writer_config(url, namespace))
        try:
            join_errors: list[str] = []
            await with_retries(manager.connect, join_errors, rng)
            await with_retries(lambda: manager.join_session(session_id, agent), join_errors, rng)
            return await emit_calls(manager, session_id, agent, count, concurrency, seed, stop_path)
        finally:
            await manager.close()

    records = asyncio.run(run())
    Path(out).write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
