"""Benchmark: the health HTTP service under load, and what metrics cost ``emit_event``.

Run: ``.venv/bin/python benchmarks/health.py`` (``--quick`` for a short run). Uses ``HUDDLE_REDIS_URL`` if set,
else starts an embedded redis-server.

1. HTTP: ``huddle serve`` runs in its own process; the load comes from another process: ``wrk`` when it is on
   PATH (``apt-get install wrk``), else this process with an httpx async client pool (much slower: on a small
   machine it measures itself more than the server); ``--concurrency`` requests in flight. Each endpoint is hammered for ``--duration`` seconds and
   requests/s and latency percentiles are measured. ``/livez`` (no Redis, no work) is the baseline of the same
   run: the HTTP stack's own ceiling on this machine; the other endpoints are reported as a ratio of it.
2. Metrics cost: ``emit_event`` throughput of a manager with a ``SessionHealthCheck`` attached (per-operation
   histogram, sliding windows and Prometheus updates after every call) against a manager without one, on the
   same server, in alternating rounds (plain, health, health, plain, ...), sequential and 50-way concurrent.
   Medians over rounds are compared; the target is < 5 % cost. The observer's own cost per call is also
   timed in isolation.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.embedded import free_port
from huddle.health import HealthConfig, PerformanceMonitor, SessionHealthCheck
from huddle.health.histogram import LatencyHistogram

TARGET_COST = 0.05
ENDPOINTS = ["/livez", "/health", "/health/detailed", "/readyz", "/metrics"]
EVENT: dict[str, Any] = {
    "type": "modified",
    "changeInfo": {"elementType": "function", "entityIds": ["src/auth/login.ts"], "operation": "updated"},
    "data": {"lines_changed": 42},
}


# -- 1. HTTP load ------------------------------------------------------------------------------------------
def start_server(redis_url: str, namespace: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "HUDDLE_REDIS_URL": redis_url, "HUDDLE_NAMESPACE": namespace}
    env.pop("HUDDLE_HEALTH_AUTH_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "huddle", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/livez", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("huddle serve did not start")


async def hammer(base: str, path: str, seconds: float, concurrency: int) -> dict[str, float]:
    """Requests/s and latency of ``path`` with ``concurrency`` requests in flight for ``seconds``."""
    latencies = LatencyHistogram()
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:
        await client.get(path)  # warm the connection and the server's cache
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                started = time.perf_counter()
                response = await client.get(path)
                latencies.record_seconds(time.perf_counter() - started)
                errors += response.status_code >= 400

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    p50, p99 = latencies.percentiles_ms(0.5, 0.99)
    return {"rps": latencies.count / elapsed, "p50": p50 or 0.0, "p99": p99 or 0.0, "errors": errors}


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _find(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise ValueError(f"wrk output without {pattern!r}: {text}")
    return match.group(1)


async def hammer_wrk(base: str, path: str, seconds: float, concurrency: int) -> dict[str, float]:
    """The same measurement with wrk (C, one thread): a load generator that is not itself the bottleneck."""
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency", base + path]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=True)
    out = done.stdout
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": float(_find(r"Requests/sec:\s+([0-9.]+)", out)),
        "p50": _ms(_find(r"\s50%\s+(\S+)", out)),
        "p99": _ms(_find(r"\s99%\s+(\S+)", out)),
        "errors": float(bad.group(1)) if bad else 0.0,
    }


async def http_benchmark(redis_url: str, seconds: float, concurrency: int, use_wrk: bool) -> None:
    process, base = start_server(redis_url, f"bench{uuid.uuid4().hex[:6]}")
    load = hammer_wrk if use_wrk else hammer
    generator = "wrk -t1" if use_wrk else "an httpx client pool"
    try:
        print(
            f"\nHTTP: huddle serve in pid {process.pid}; load: {generator} (own process), {concurrency} in flight"
        )
        print(f"{'endpoint':<18}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'vs /livez':>11}{'errors':>8}")
        baseline = None
        for path in ENDPOINTS:
            result = await load(base, path, seconds, concurrency)
            baseline = baseline or result["rps"]
            print(
                f"{path:<18}{result['rps']:>10.0f}{result['p50']:>10.2f}{result['p99']:>10.2f}"
                f"{result['rps'] / baseline:>11.2f}{int(result['errors']):>8}"
            )
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        print(f"huddle serve exited with {code} after SIGTERM")


# -- 2. metrics cost on emit_event -----------------------------------------------------------------------
async def emit_round(manager: SessionManager, events: int, concurrency: int) -> float:
    """Events per second for ``events`` emits into a fresh session (``concurrency`` agents in flight)."""
    agents = [f"agent-{i}" for i in range(concurrency)]
    sid = await manager.create_session(agents[0])
    for agent in agents[1:]:
        await manager.join_session(sid, agent)
    per_agent = events // concurrency

    async def agent_loop(agent: str) -> None:
        for _ in range(per_agent):
            await manager.emit_event(sid, EVENT, agent)

    started = time.perf_counter()
    await asyncio.gather(*(agent_loop(agent) for agent in agents))
    return per_agent * concurrency / (time.perf_counter() - started)


async def cost_benchmark(config: SessionManagerConfig, events: int, rounds: int) -> list[float]:
    costs = []
    async with AsyncExitStack() as stack:
        plain = await stack.enter_async_context(SessionManager(config))
        measured = await stack.enter_async_context(SessionManager(config))
        health = await stack.enter_async_context(SessionHealthCheck(HealthConfig()))
        await health.initialize(session_manager=measured)
        print(f"\nemit_event with metrics on vs off: {rounds} alternating rounds of {events} events, medians")
        print(f"{'mode':<12}{'off ev/s':>10}{'on ev/s':>10}{'on/off':>8}{'cost':>8}")
        for concurrency in (1, 50):
            results: dict[str, list[float]] = {"off": [], "on": []}
            await emit_round(plain, events // 4, concurrency)  # warm both
            await emit_round(measured, events // 4, concurrency)
            for index in range(rounds):
                order = (
                    [("off", plain), ("on", measured)]
                    if index % 2 == 0
                    else [("on", measured), ("off", plain)]
                )
                for name, manager in order:
                    results[name].append(await emit_round(manager, events, concurrency))
            off, on = statistics.median(results["off"]), statistics.median(results["on"])
            cost = 1 - on / off
            costs.append(cost)
            mode = "sequential" if concurrency == 1 else f"{concurrency} agents"
            print(f"{mode:<12}{off:>10.0f}{on:>10.0f}{on / off:>8.3f}{cost:>8.1%}")
        recorded = health.metrics().performance.operations["emit"]["5m"]
        print(
            f"(the health check saw {recorded.operations} emits in its 5-minute window, p99 {recorded.p99_ms:.3f} ms)"
        )
    return costs


def observer_cost(calls: int = 200_000) -> float:
    """Microseconds per ``PerformanceMonitor.observe`` call (histogram + windows + Prometheus)."""
    from prometheus_client import CollectorRegistry

    monitor = PerformanceMonitor(CollectorRegistry())
    observe: Callable[[str, float, bool], None] = monitor.observe
    started = time.perf_counter()
    for i in range(calls):
        observe("emit", 0.0002 + (i % 100) * 1e-6, True)
    return (time.perf_counter() - started) / calls * 1e6


async def main(args: argparse.Namespace) -> int:
    async with AsyncExitStack() as stack:
        url = os.environ.get("HUDDLE_REDIS_URL")
        if not url:
            server = await stack.enter_async_context(EmbeddedRedis())
            url = server.url
            print(f"embedded redis-server {server.version()} at {url}")
        use_wrk = shutil.which("wrk") is not None and not args.httpx
        await http_benchmark(url, args.duration, args.concurrency, use_wrk)
        config = SessionManagerConfig(
            redis_url=url, namespace=f"bench{uuid.uuid4().hex[:6]}", max_events_per_session=100_000
        )
        costs = await cost_benchmark(config, args.events, args.rounds)
    print(f"\nobserver alone: {observer_cost():.2f} us per operation")
    worst = max(costs)
    print(f"metrics cost on emit_event: worst mode {worst:.1%} (target < {TARGET_COST:.0%})")
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per HTTP endpoint")
    parser.add_argument("--concurrency", type=int, default=32, help="HTTP requests in flight")
    parser.add_argument("--events", type=int, default=2000, help="events per emit round")
    parser.add_argument("--rounds", type=int, default=8, help="alternating rounds per mode")
    parser.add_argument(
        "--httpx", action="store_true", help="generate HTTP load with httpx even if wrk exists"
    )
    parser.add_argument("--quick", action="store_true", help="short run (1 s per endpoint, 4 rounds of 600)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.events, args.rounds = 1.0, 600, 4
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
