"""Benchmark: client CPU per event of ``emit_event`` (50 tasks, one session) and ``emit_events`` (batches of 100,
against a raw pipelined XADD of the same payloads).

Run: ``.venv/bin/python -P benchmarks/emit_client.py [--events 20000] [--profile]``.
One embedded redis-server; the process's CPU time (``time.process_time``) over the timed part, divided by the
events appended, is the Python work per event (validation, serialization, argument building, the client's
pipelining and reply parsing). ``--profile`` prints a pyinstrument profile of the ``emit_event`` run instead
of timing it cleanly (the profiler itself slows the run down).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from huddle import EmbeddedRedis, SessionEvent, SessionManager, SessionManagerConfig

EVENT: dict[str, Any] = {
    "type": "modified",
    "changeInfo": {
        "elementType": "function",
        "entityIds": ["src/auth/login.ts", "src/auth/session.ts"],
        "operation": "updated",
        "description": "validate the refresh token before issuing a new one",
    },
    "impact": {"severity": "medium", "affectedEntities": ["auth.test.ts"]},
    "data": {"lines_changed": 42, "reviewer": "frontend-agent"},
}
"""The event of benchmarks/emit.py (the spec's ``modified``), as a dict validated on every call."""


async def concurrent(manager: SessionManager, sid: str, agents: list[str], events: int) -> None:
    queue = iter(range(events))

    async def lane(actor: str) -> None:
        for _ in queue:
            await manager.emit_event(sid, EVENT, actor)

    await asyncio.gather(*(lane(actor) for actor in agents))


async def batches(manager: SessionManager, sids: list[str], per_session: int) -> None:
    batch = [EVENT] * 100

    async def lane(sid: str) -> None:
        for _ in range(per_session):
            await manager.emit_events(sid, batch, "agent-0")

    await asyncio.gather(*(lane(sid) for sid in sids))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with EmbeddedRedis() as server:
        config = SessionManagerConfig(redis_url=server.url, namespace="bench")
        async with SessionManager(config) as manager:
            agents = [f"agent-{i}" for i in range(50)]
            sid = await manager.create_session(agents[0])
            for agent in agents[1:]:
                await manager.join_session(sid, agent)
            await concurrent(manager, sid, agents, 2000)  # warm-up
            if args.profile:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0005)
                profiler.start()
                await concurrent(manager, sid, agents, args.events)
                profiler.stop()
                print(profiler.output_text(unicode=False, color=False))
                return
            cpu, wall = time.process_time(), time.perf_counter()
            await concurrent(manager, sid, agents, args.events)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(
                f"emit_event, 50 tasks, one session : {args.events / wall:8.0f} events/s, "
                f"client CPU {cpu / args.events * 1e6:5.1f} us/event"
            )
            sids = [await manager.create_session("agent-0") for _ in range(10)]
            await batches(manager, sids, 3)  # warm-up
            per_session = max(1, args.events // 1000)
            cpu, wall = time.process_time(), time.perf_counter()
            await batches(manager, sids, per_session)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            total = per_session * 10 * 100
            print(
                f"emit_events x100, 10 sessions     : {total / wall:8.0f} events/s, "
                f"client CPU {cpu / total * 1e6:5.1f} us/event"
            )
            raw_rate = await raw_xadd(manager, per_session)
            print(
                f"raw pipelined XADD x100 (baseline): {raw_rate:8.0f} events/s; "
                f"emit_events / raw = {total / wall / raw_rate:.2f}"
            )


async def raw_xadd(manager: SessionManager, per_session: int) -> float:
    """Events/s of plain XADDs of the same serialized payloads, 100 per pipeline, 10 streams at once."""
    payload = SessionEvent.model_validate(EVENT).payload_json()
    client = manager.client
    streams = [f"bench:raw:{{{i}}}" for i in range(10)]

    async def lane(stream: str) -> None:
        for _ in range(per_session):
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(100):
                    pipe.xadd(stream, {"t": "modified", "a": "agent-0", "d": payload})
                await pipe.execute()

    wall = time.perf_counter()
    await asyncio.gather(*(lane(stream) for stream in streams))
    return per_session * 10 * 100 / (time.perf_counter() - wall)


if __name__ == "__main__":
    asyncio.run(main())
