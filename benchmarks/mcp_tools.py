"""Benchmark: the MCP door against the library, in the same run, on the same Redis.

Run: ``.venv/bin/python benchmarks/mcp_tools.py [--events 400] [--wakeups 100]``. Uses ``HUDDLE_REDIS_URL`` if set,
else starts an embedded redis-server. Two ``huddle mcp`` processes (agents A and B) are started over stdio with
the mcp SDK's own client, exactly as a coding agent's MCP client starts them.

1. ``post_event`` round trip: A's client calls ``post_event`` (JSON-RPC over the pipes, argument validation,
   ``SessionManager.emit_event`` inside the server process, structured reply) vs ``emit_event`` called directly
   in this process, alternating in blocks (ABAB...) on the same session so machine load hits both alike.
   ``list_prompts`` on the same connection (SDK only, no huddle code) is timed in the same blocks: the floor.
2. ``wait_for_events`` wake-up: B's client is blocked in ``wait_for_events``; this process appends an event
   with ``emit_event``; latency = from ``emit_event`` returning (the writer's acknowledgement) to B's reply.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from contextlib import AsyncExitStack
from typing import Any

from mcp import Client, StdioServerParameters

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig

EVENT: dict[str, Any] = {
    "type": "modified",
    "element_type": "function",
    "operation": "updated",
    "entity_ids": ["src/auth/login.ts", "src/auth/session.ts"],
    "description": "validate the refresh token before issuing a new one",
}
PASS_ENV = {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}
"""MCP clients give servers a minimal environment; keep the import path so the server runs this same code."""
LIBRARY_EVENT: dict[str, Any] = {
    "type": "modified",
    "change_info": {k: EVENT[k] for k in ("element_type", "operation", "entity_ids", "description")},
}


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))] * 1000


def agent(agent_id: str, url: str, namespace: str) -> Client:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "huddle", "mcp", "--agent-id", agent_id],
        env={"HUDDLE_REDIS_URL": url, "HUDDLE_NAMESPACE": namespace, **PASS_ENV},
    )
    return Client(params, read_timeout_seconds=120, cache=None)  # no client-side cache: every call is timed


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    if getattr(result, "is_error", True) or getattr(result, "structured_content", None) is None:
        raise RuntimeError(f"{tool} failed: {result}")
    return dict(result.structured_content)


async def post_round_trips(
    a: Client, manager: SessionManager, sid: str, events: int, block: int
) -> tuple[list[float], list[float], list[float]]:
    mcp_times: list[float] = []
    lib_times: list[float] = []
    ping_times: list[float] = []
    arguments = {"session_id": sid, **EVENT}
    for _ in range(20):  # warm-up both paths (imports, script load, connection pools)
        await call(a, "post_event", arguments)
        await manager.emit_event(sid, LIBRARY_EVENT, "agent-a")
    while len(mcp_times) < events:
        for _ in range(block):
            started = time.perf_counter()
            await call(a, "post_event", arguments)
            mcp_times.append(time.perf_counter() - started)
        for _ in range(block):
            started = time.perf_counter()
            await manager.emit_event(sid, LIBRARY_EVENT, "agent-a")
            lib_times.append(time.perf_counter() - started)
        for _ in range(block):  # the SDK's own floor on this connection: listing prompts runs no huddle code
            started = time.perf_counter()
            await a.list_prompts()
            ping_times.append(time.perf_counter() - started)
    return mcp_times, lib_times, ping_times


async def timed_wait(b: Client, sid: str, after: int) -> tuple[dict[str, Any], float]:
    reply = await call(b, "wait_for_events", {"session_id": sid, "after_seq": after, "timeout_s": 30})
    return reply, time.perf_counter()


async def wakeups(b: Client, manager: SessionManager, sid: str, rounds: int) -> tuple[list[float], int]:
    latencies: list[float] = []
    missed = 0
    last = (await manager.get_session(sid)).last_seq
    for _ in range(rounds):
        waiting = asyncio.create_task(timed_wait(b, sid, last))
        await asyncio.sleep(0.05)  # let the call reach its blocking read (an early write is answered at once)
        seq = await manager.emit_event(sid, LIBRARY_EVENT, "agent-a")
        acked = time.perf_counter()
        reply, replied = await waiting
        latencies.append(replied - acked)
        if reply["events"][0]["seq"] != seq:
            missed += 1
        last = reply["last_seq"]
    return latencies, missed


async def main(events: int, block: int, rounds: int) -> None:
    async with AsyncExitStack() as stack:
        url = os.environ.get("HUDDLE_REDIS_URL")
        if not url:
            url = (await stack.enter_async_context(EmbeddedRedis())).url
        namespace = f"bench-mcp-{uuid.uuid4().hex[:8]}"
        config = SessionManagerConfig(redis_url=url, namespace=namespace, max_events_per_session=100_000)
        manager = await stack.enter_async_context(SessionManager(config))
        a = await stack.enter_async_context(agent("agent-a", url, namespace))
        b = await stack.enter_async_context(agent("agent-b", url, namespace))
        sid = (await call(a, "create_session", {}))["session_id"]
        await call(b, "join_session", {"session_id": sid})

        mcp_times, lib_times, ping_times = await post_round_trips(a, manager, sid, events, block)
        latencies, missed = await wakeups(b, manager, sid, rounds)
        log = await manager.get_events(sid)
        assert [e.seq for e in log] == list(range(log[0].seq, log[0].seq + len(log))), "log is not gapless"

    print(
        f"command: .venv/bin/python benchmarks/mcp_tools.py --events {events} --block {block} --wakeups {rounds}"
    )
    print(f"post_event over stdio ({len(mcp_times)} calls): p50 {pct(mcp_times, 50):.2f} ms, "
          f"p99 {pct(mcp_times, 99):.2f} ms, mean {statistics.fmean(mcp_times) * 1000:.2f} ms")  # fmt: skip
    print(f"library emit_event    ({len(lib_times)} calls): p50 {pct(lib_times, 50):.2f} ms, "
          f"p99 {pct(lib_times, 99):.2f} ms, mean {statistics.fmean(lib_times) * 1000:.2f} ms")  # fmt: skip
    print(f"list_prompts (floor)  ({len(ping_times)} calls): p50 {pct(ping_times, 50):.2f} ms, "
          f"p99 {pct(ping_times, 99):.2f} ms, mean {statistics.fmean(ping_times) * 1000:.2f} ms")  # fmt: skip
    print(f"ratio MCP / library: p50 {pct(mcp_times, 50) / pct(lib_times, 50):.1f}x, "
          f"p99 {pct(mcp_times, 99) / pct(lib_times, 99):.1f}x")  # fmt: skip
    print(f"wait_for_events wake-up ({len(latencies)} rounds, {missed} replies not starting with the new event): "
          f"p50 {pct(latencies, 50):.2f} ms, p99 {pct(latencies, 99):.2f} ms, max {max(latencies) * 1000:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=400, help="timed post_event calls (and as many emit_event)"
    )
    parser.add_argument("--block", type=int, default=20, help="calls per alternating block")
    parser.add_argument("--wakeups", type=int, default=100, help="timed wait_for_events wake-ups")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.block, args.wakeups))
