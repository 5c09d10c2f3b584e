"""The workloads of ``benchmarks/emit.py``: huddle's calls and the raw redis-py baselines they are compared with.

Every workload is a function ``(events, first) -> Sample`` built before timing starts (sessions created, scripts
loaded, arguments and tokens prepared), so a timed block measures only the appends."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from huddle import SessionEvent, SessionManager
from huddle.backend.connection import ready

LEAN = """local seq = redis.call('HINCRBY', KEYS[1], 'last_seq', 1)
local t = redis.call('TIME')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. seq, 'e', ARGV[1])
redis.call('HSET', KEYS[1], 'updated_at', t[1], 'state', 'working')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', KEYS[3], seq)
return seq"""
"""Issue 12's lean append script (KEYS: meta, events, channel; ARGV: payload, ttl, max events), verbatim."""

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
"""A typical agent event, as a plain dict with the spec's camelCase names (validated on every huddle call)."""

PAYLOAD = SessionEvent.model_validate(EVENT).payload_json()
"""The event as huddle stores it (the lean script and the raw XADDs store these very bytes)."""

SCRIPT_COMMANDS = ("evalsha", "fcall", "eval", "evalsha_ro", "fcall_ro")


@dataclass(frozen=True)
class Sample:
    """One timed block: wall seconds, this process's CPU seconds, per-call latencies, server stats deltas."""

    events: int
    wall: float
    cpu: float
    latencies: list[float]
    server: dict[str, tuple[int, float]]
    """Per command: (calls, usec) run by the server during the block (INFO commandstats delta)."""

    @property
    def throughput(self) -> float:
        return self.events / self.wall

    @property
    def cpu_per_event(self) -> float:
        return self.cpu / self.events

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    @property
    def script_us_per_call(self) -> float:
        """Server µs per script call (EVALSHA / FCALL), commands run inside the script included."""
        calls = sum(self.server.get(name, (0, 0.0))[0] for name in SCRIPT_COMMANDS)
        usec = sum(self.server.get(name, (0, 0.0))[1] for name in SCRIPT_COMMANDS)
        return usec / calls if calls else 0.0


Workload = Callable[[int, int], Awaitable[Sample]]
"""Run ``events`` appends (numbered from ``first``); returns the timed sample."""


async def commandstats(client: Any) -> dict[str, tuple[int, float]]:
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), float(v["usec"])) for name, v in stats.items()}


def delta(before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]]) -> dict[str, Any]:
    out = {}
    for name, (calls, usec) in after.items():
        was = before.get(name, (0, 0.0))
        if name != "info" and calls != was[0]:
            out[name] = (calls - was[0], usec - was[1])
    return out


async def timed(stats_client: Any, events: int, body: Callable[[list[float]], Awaitable[None]]) -> Sample:
    """Time ``body`` (which appends ``events`` and records per-call latencies), with the server's deltas."""
    before = await commandstats(stats_client)
    latencies: list[float] = []
    cpu, begin = time.process_time(), time.perf_counter()
    await body(latencies)
    wall, cpu = time.perf_counter() - begin, time.process_time() - cpu
    return Sample(events, wall, cpu, latencies, delta(before, await commandstats(stats_client)))


async def run_tasks(
    calls: Sequence[Callable[[int], Awaitable[Any]]], per_task: int, latencies: list[float]
) -> None:
    """Each call function in its own task, ``per_task`` sequential calls each (numbered 0..)."""
    clock = time.perf_counter

    async def loop(call: Callable[[int], Awaitable[Any]]) -> None:
        for i in range(per_task):
            start = clock()
            await call(i)
            latencies.append(clock() - start)

    await asyncio.gather(*(loop(call) for call in calls))


async def new_session(manager: SessionManager, agents: Sequence[str]) -> str:
    session_id = await manager.create_session(agents[0])
    for agent in agents[1:]:
        await manager.join_session(session_id, agent)
    return session_id


# -- huddle -------------------------------------------------------------------------------------------------------
async def huddle_emits(manager: SessionManager, stats: Any, agents: Sequence[str]) -> Workload:
    """``emit_event(sid, EVENT, agent)``: one task per agent, all on one fresh session."""
    sid = await new_session(manager, agents)

    async def run(events: int, first: int) -> Sample:
        calls = [lambda _i, a=agent: manager.emit_event(sid, EVENT, a) for agent in agents]
        return await timed(stats, events, lambda lat: run_tasks(calls, events // len(agents), lat))

    return run


async def huddle_batches(manager: SessionManager, stats: Any, sessions: int, batch: int) -> Workload:
    """``emit_events(sid, [EVENT] * batch, agent)`` from ONE task: ``sessions`` calls at once (one per session,
    gathered: they share round trips), repeated; events = sessions * batch * repeats."""
    sids = [await new_session(manager, ["agent-00"]) for _ in range(sessions)]
    events_list = [EVENT] * batch

    async def run(events: int, first: int) -> Sample:
        async def body(latencies: list[float]) -> None:
            clock = time.perf_counter
            for _ in range(events // (batch * sessions)):
                start = clock()
                await asyncio.gather(*(manager.emit_events(sid, events_list, "agent-00") for sid in sids))
                latencies.append(clock() - start)

        return await timed(stats, events, body)

    return run


# -- raw redis-py baselines --------------------------------------------------------------------------------------
async def recorded_script_call(
    manager: SessionManager, sid: str, actor: str
) -> tuple[tuple[Any, ...], list[int]]:
    """The exact script command (EVALSHA or FCALL, with its keys and arguments) huddle sends for ``EVENT``, and the
    positions that change per call (the random idempotency token): two emits are recorded and compared."""
    real = await ready(manager.client)
    original = real.execute_command
    captured: list[tuple[Any, ...]] = []

    def spy(*args: Any, **options: Any) -> Any:
        if str(args[0]).upper() in ("EVALSHA", "FCALL"):
            captured.append(args)
        return original(*args, **options)

    holders = (
        [real] if real is manager.client else [real, manager.client]
    )  # an AutoClient caches bound methods
    for holder in holders:
        holder.execute_command = spy
    try:
        await manager.emit_event(sid, EVENT, actor)
        await manager.emit_event(sid, EVENT, actor)
    finally:
        for holder in holders:
            del holder.execute_command
    # huddle's retry mark (see autopipeline.retry_mark) reads b"r" once sent; a replay is a first send
    first, second = (
        tuple(b"f" if isinstance(arg, memoryview) else arg for arg in call) for call in captured[-2:]
    )
    varying = [n for n, (a, b) in enumerate(zip(first, second, strict=True)) if a != b]
    for n in varying:  # only the per-call retry token may differ; anything else would be a bench bug
        if not str(first[n]).replace("-", "").replace("_", "").isalnum():
            raise RuntimeError(f"huddle's script call varies at argument {n} ({first[n]!r}): not a token")
    return first, varying


async def own_script(manager: SessionManager, raw: aioredis.Redis, agents: Sequence[str]) -> Workload:
    """Raw redis-py sending huddle's own recorded script command, fresh tokens, one task per agent."""
    sid = await new_session(manager, agents)
    template, varying = await recorded_script_call(manager, sid, agents[0])
    actor_at = template.index(agents[0])

    async def run(events: int, first: int) -> Sample:
        per_task = events // len(agents)
        prepared = []
        for agent in agents:
            rows = []
            for _ in range(per_task):
                args = list(template)
                args[actor_at] = agent
                for n in varying:  # a fresh unique token of the same length
                    size = len(str(template[n]))
                    args[n] = os.urandom(size // 2 + 1).hex()[:size]
                rows.append(tuple(args))
            prepared.append(rows)
        calls = [lambda i, rows=rows: raw.execute_command(*rows[i]) for rows in prepared]
        return await timed(raw, events, lambda lat: run_tasks(calls, per_task, lat))

    return run


async def lean_script(
    raw: aioredis.Redis, tasks: int, max_events: int, ttl: int, base: str | None = None
) -> Workload:
    """Raw redis-py EVALSHA of the lean script, ``tasks`` tasks on one session's keys (``<base>:meta`` ...)."""
    sha = await raw.script_load(LEAN)
    base = base or f"bench-lean:{{{uuid.uuid4().hex[:12]}}}"
    head = (sha, 3, f"{base}:meta", f"{base}:events", f"{base}:ch", PAYLOAD, ttl, max_events)

    async def run(events: int, first: int) -> Sample:
        calls = [lambda _i: raw.evalsha(*head) for _ in range(tasks)]
        return await timed(raw, events, lambda lat: run_tasks(calls, events // tasks, lat))

    return run


async def raw_xadd_pipeline(raw: aioredis.Redis, batch: int, max_events: int) -> Workload:
    """Raw redis-py pipelines (no MULTI) of ``batch`` XADDs of the same payloads, one after the other."""
    key = f"bench-xadd:{{{uuid.uuid4().hex[:12]}}}:events"

    async def run(events: int, first: int) -> Sample:
        async def body(latencies: list[float]) -> None:
            clock = time.perf_counter
            for _ in range(events // batch):
                start = clock()
                async with raw.pipeline(transaction=False) as pipe:
                    for _ in range(batch):
                        pipe.xadd(key, {"t": "modified", "a": "agent-00", "d": PAYLOAD}, maxlen=max_events)
                    await pipe.execute()
                latencies.append(clock() - start)

        return await timed(raw, events, body)

    return run


# -- memory -------------------------------------------------------------------------------------------------------
async def bytes_per_event(manager: SessionManager, raw: aioredis.Redis, events: int) -> dict[str, Any]:
    """MEMORY USAGE (SAMPLES 0: exact) of a session holding ``events`` events, per event, against the payload."""
    sid = await new_session(manager, ["agent-00"])
    for start in range(0, events - 1, 100):
        await manager.emit_events(sid, [EVENT] * min(100, events - 1 - start), "agent-00")
    keys = manager.keys.session(sid)
    stored = len(await manager.get_events(sid))
    usage = {key: int(await raw.memory_usage(key, samples=0) or 0) for key in keys.all}
    base = f"bench-lean:{{{uuid.uuid4().hex[:12]}}}"
    lean = await lean_script(raw, 1, events, 3600, base)
    await lean(events, 0)
    lean_stream = int(await raw.memory_usage(f"{base}:events", samples=0) or 0)
    return {
        "events": stored,
        "payload_bytes": len(PAYLOAD.encode()),
        "event_json_bytes": len(SessionEvent.model_validate(EVENT).model_dump_json().encode()),
        "session_bytes": sum(usage.values()),
        "stream_bytes": usage[keys.events],
        "per_event_session": sum(usage.values()) / stored,
        "per_event_stream": usage[keys.events] / stored,
        "lean_stream_per_event": lean_stream / events,
        "keys": {key.rsplit(":", 1)[-1]: size for key, size in usage.items() if size},
    }
