"""Benchmark: what graceful shutdown costs.

1. In-flight tracking on the hot path: ``emit_event`` as shipped (counted by ``_in_flight``) against the same
   method unwrapped (``SessionManager.emit_event.__wrapped__``), calls alternating one by one, medians reported;
   plus the counter alone on a no-op coroutine (no Redis, so no network noise).
2. A shutdown of N sessions: time from ``shutdown()`` to ``complete`` and its checkpointing phase, against a
   baseline of N ``checkpoint(force_snapshot=True)`` calls issued with the same concurrency in the same run.

Run: ``.venv/bin/python benchmarks/shutdown.py [--sessions 500] [--events 2000] [--rounds 5]``. Uses
``HUDDLE_REDIS_URL`` if set, else an embedded redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from contextlib import AsyncExitStack

from huddle import (
    EmbeddedRedis,
    SessionGracefulShutdown,
    SessionManager,
    SessionManagerConfig,
    ShutdownConfig,
)
from huddle import manager as manager_module

EVENT = {
    "type": "modified",
    "change_info": {"element_type": "function", "entity_ids": ["f"], "operation": "modified"},
}


async def emit_rounds(config: SessionManagerConfig, events: int, rounds: int) -> tuple[float, float]:
    """Median µs per emit with and without the in-flight counter.

    The two kinds of call alternate one by one on the same session, so load changes on a shared machine hit
    both sides alike (block-wise rounds showed ±40 % swings here)."""
    unwrapped = SessionManager.emit_event.__wrapped__  # type: ignore[attr-defined]
    async with SessionManager(config) as manager:
        sid = await manager.create_session("bench")
        for _ in range(200):
            await manager.emit_event(sid, EVENT, "bench")
        tracked: list[float] = []
        plain: list[float] = []
        for i in range(events * rounds * 2):
            started = time.perf_counter()
            if i % 2:
                await manager.emit_event(sid, EVENT, "bench")
                tracked.append(time.perf_counter() - started)
            else:
                await unwrapped(manager, sid, EVENT, "bench")
                plain.append(time.perf_counter() - started)
    return statistics.median(tracked) * 1e6, statistics.median(plain) * 1e6


class _Bare:
    """Just the attributes the counter touches, to time the wrapper without Redis noise."""

    def __init__(self) -> None:
        self._in_flight = 0
        self._idle = None

    async def op(self, value: int) -> int:
        return value

    tracked = manager_module._in_flight(op)  # type: ignore[arg-type]


async def wrapper_cost(calls: int = 200_000, rounds: int = 7) -> tuple[float, float]:
    """Median ns per call of a no-op coroutine method, plain and wrapped by the in-flight counter."""
    bare = _Bare()
    plain: list[float] = []
    tracked: list[float] = []
    for _ in range(rounds):
        for method, out in ((bare.op, plain), (bare.tracked, tracked)):
            started = time.perf_counter()
            for i in range(calls):
                await method(i)
            out.append((time.perf_counter() - started) / calls * 1e9)
    return statistics.median(tracked), statistics.median(plain)


async def shutdown_vs_checkpoints(config: SessionManagerConfig, sessions: int) -> tuple[float, float, float]:
    """(seconds to complete a shutdown, its checkpointing phase, baseline of the same checkpoints)."""
    concurrency = 16
    async with SessionManager(config) as baseline_manager:
        ids = [await baseline_manager.create_session(f"a{i}") for i in range(sessions)]
        limit = asyncio.Semaphore(concurrency)

        async def one(sid: str) -> None:
            async with limit:
                await baseline_manager.checkpoint(sid, reason="bench", force_snapshot=True)

        started = time.perf_counter()
        await asyncio.gather(*(one(sid) for sid in ids))
        baseline = time.perf_counter() - started
    manager = await SessionManager(config).connect()
    for i in range(sessions):
        await manager.create_session(f"b{i}")
    shutdown = SessionGracefulShutdown(
        ShutdownConfig(
            grace_period=120, namespace=config.namespace, instance_id="bench", handle_signals=False,
            checkpoint_concurrency=concurrency,
        )
    )  # fmt: skip
    await shutdown.initialize(session_manager=manager)
    started = time.perf_counter()
    status = await shutdown.shutdown(reason="benchmark")
    total = time.perf_counter() - started
    assert status.sessions_checkpointed == sessions, status
    return total, status.phase_seconds["checkpointing"], baseline


async def main(args: argparse.Namespace) -> None:
    async with AsyncExitStack() as stack:
        url = os.environ.get("HUDDLE_REDIS_URL")
        if not url:
            server = await stack.enter_async_context(EmbeddedRedis())
            url = server.url
            print(f"embedded redis-server {server.version()} at {url}")
        config = SessionManagerConfig(redis_url=url, namespace=f"bench-{uuid.uuid4().hex[:6]}", cluster=False)
        tracked, plain = await emit_rounds(config, args.events, args.rounds)
        print(
            f"emit_event with in-flight tracking: {tracked:.1f} µs/emit (median of {args.events * args.rounds})"
        )
        print(f"emit_event unwrapped:               {plain:.1f} µs/emit")
        print(f"ratio tracked/unwrapped:            {tracked / plain:.3f}")
        wrapped_ns, bare_ns = await wrapper_cost()
        print(
            f"counter alone (no Redis):           {wrapped_ns - bare_ns:.0f} ns/call ({bare_ns:.0f} -> {wrapped_ns:.0f})"
        )
        total, phase, baseline = await shutdown_vs_checkpoints(config, args.sessions)
        print(
            f"shutdown of {args.sessions} sessions:       {total * 1000:.0f} ms total, checkpointing {phase * 1000:.0f} ms"
        )
        print(f"baseline {args.sessions} checkpoints:        {baseline * 1000:.0f} ms")
        print(f"ratio checkpointing phase/baseline:  {phase / baseline:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
