"""Benchmark: non-blocking cluster detection and cluster-wide health, measured on local servers.

Run: ``.venv/bin/python benchmarks/cluster_health.py``. Three measurements, all in this process:

1. **Event-loop stall during detection** against a server that accepts connections and never answers (a hung
   Redis): a ticker task records the longest gap between its wake-ups while (a) the synchronous probe
   (``connection.detect_cluster``, what ``create_client`` did before) runs, and (b) a ``SessionManager`` with
   ``cluster`` unset is built and ``connect()`` is awaited (it fails with ``RedisUnavailableError``).
2. **Emit cost of the auto-detecting client**: sequential ``emit_event`` throughput with ``cluster`` unset
   (through ``AutoClient``) vs ``cluster=false`` (plain client), alternating rounds on one server; the ratio
   of the medians.
3. **Health check cost on a cluster**: median duration of the ``redis`` and ``pubsub`` components on a local
   3-master/3-replica cluster vs a standalone server.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.connection import detect_cluster, resolve_target
from huddle.backend.topology import EmbeddedCluster
from huddle.errors import RedisUnavailableError
from huddle.health import HealthConfig, SessionHealthCheck


async def _silent_server() -> tuple[asyncio.Server, str]:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(4096):
            pass
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"


async def _worst_gap(work: Callable[[], Awaitable[object]]) -> float:
    """Longest gap (ms) between wake-ups of a 5 ms ticker while ``work`` runs."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append((now - last) * 1000)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.02)
    try:
        await work()
    finally:
        stop.set()
        await ticker
    return max(gaps)


async def stall() -> dict[str, float]:
    server, url = await _silent_server()
    config = SessionManagerConfig(redis_url=url, connect_timeout=2, socket_timeout=2, retry_attempts=0)

    async def old_probe() -> object:
        return detect_cluster(config, resolve_target(config))  # synchronous, inside the loop

    async def new_connect() -> object:
        manager = SessionManager(config)
        try:
            await manager.connect()
        except RedisUnavailableError:
            pass
        finally:
            await manager.close()
        return None

    try:
        return {
            "sync_probe_ms": await _worst_gap(old_probe),
            "async_connect_ms": await _worst_gap(new_connect),
        }
    finally:
        server.close()
        await server.wait_closed()


async def _emit_rate(manager: SessionManager, events: int) -> float:
    sid = await manager.create_session("bench")
    started = time.perf_counter()
    for _ in range(events):
        await manager.emit_event(sid, {"type": "modified"}, "bench")
    return events / (time.perf_counter() - started)


async def emit_cost(url: str, events: int, rounds: int) -> dict[str, float]:
    namespace = f"bench{uuid.uuid4().hex[:6]}"
    auto = SessionManager(
        SessionManagerConfig(redis_url=url, namespace=namespace, max_events_per_session=100_000)
    )
    plain = SessionManager(
        SessionManagerConfig(
            redis_url=url, namespace=namespace, cluster=False, max_events_per_session=100_000
        )
    )
    rates: dict[str, list[float]] = {"auto": [], "plain": []}
    async with auto, plain:
        await _emit_rate(auto, 200)
        await _emit_rate(plain, 200)
        for index in range(rounds):
            order = (
                (("auto", auto), ("plain", plain)) if index % 2 == 0 else (("plain", plain), ("auto", auto))
            )
            for name, manager in order:
                rates[name].append(await _emit_rate(manager, events))
    auto_rate, plain_rate = statistics.median(rates["auto"]), statistics.median(rates["plain"])
    return {"auto_eps": auto_rate, "plain_eps": plain_rate, "ratio": auto_rate / plain_rate}


async def _component_ms(url: str, checks: int) -> dict[str, float]:
    config = SessionManagerConfig(redis_url=url, namespace=f"bench{uuid.uuid4().hex[:6]}")
    durations: dict[str, list[float]] = {"redis": [], "pubsub": []}
    async with (
        SessionManager(config) as manager,
        SessionHealthCheck(HealthConfig(check_interval=3600)) as health,
    ):
        await health.initialize(session_manager=manager)
        for _ in range(checks):
            report = await health.check_now()
            for name in durations:
                durations[name].append(float(report.components[name].duration_ms or 0.0))
    return {name: statistics.median(values) for name, values in durations.items()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=2000, help="sequential emits per round and side")
    parser.add_argument("--rounds", type=int, default=7, help="alternating emit rounds (medians)")
    parser.add_argument("--checks", type=int, default=20, help="health checks per topology (median)")
    args = parser.parse_args()

    gaps = await stall()
    print(
        f"loop stall against a hung server: sync probe {gaps['sync_probe_ms']:.0f} ms, "
        f"async detection (SessionManager.connect) {gaps['async_connect_ms']:.1f} ms"
    )
    with EmbeddedRedis() as server:
        cost = await emit_cost(server.url, args.events, args.rounds)
        standalone = await _component_ms(server.url, args.checks)
    print(
        f"emit, cluster unset (AutoClient) {cost['auto_eps']:,.0f} ev/s vs cluster=false {cost['plain_eps']:,.0f} "
        f"ev/s: ratio {cost['ratio']:.3f}"
    )
    with EmbeddedCluster(masters=3, replicas=1) as cluster:
        clustered = await _component_ms(cluster.url, args.checks)
    for name in ("redis", "pubsub"):
        print(
            f"{name} component check, median: standalone {standalone[name]:.2f} ms, "
            f"3+3 cluster {clustered[name]:.2f} ms (ratio {clustered[name] / standalone[name]:.1f})"
        )


if __name__ == "__main__":
    asyncio.run(main())
