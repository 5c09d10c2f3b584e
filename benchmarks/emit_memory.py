"""Benchmark: Redis bytes per stored event against the event payload's bytes (issue 12, target 5: <= 2x).

Run: ``.venv/bin/python -P benchmarks/emit_memory.py [--events 1000] [--binary PATH]``.
On one embedded redis-server, a session gets ``--events`` events through ``SessionManager.emit_event`` with the
defaults (auto-checkpoint every 10, trimming at ``max_events_per_session``, retry tokens), once with the spec's
``modified`` event of benchmarks/emit.py and once with a small one. ``MEMORY USAGE <key> SAMPLES 0`` (exact) of
every key of the session is divided by the events in the log; "payload" is the stored body (``d`` field) plus
the type and actor, i.e. what a plain ``XADD`` of the event would have to store.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

import redis.asyncio as aioredis

from huddle import EmbeddedRedis, SessionEvent, SessionManager, SessionManagerConfig

BIG: dict[str, Any] = {
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
SMALL: dict[str, Any] = {"type": "modified", "data": {"file": "src/app.ts", "lines": 3}}


async def measure(url: str, event: dict[str, Any], events: int, namespace: str) -> dict[str, float]:
    config = SessionManagerConfig(redis_url=url, namespace=namespace)
    async with SessionManager(config) as manager:
        agents = [f"agent-{i}" for i in range(5)]
        sid = await manager.create_session(agents[0])
        for agent in agents[1:]:
            await manager.join_session(sid, agent)
        for i in range(events):
            await manager.emit_event(sid, event, agents[i % len(agents)])
        keys = manager.keys.session(sid)
        admin = aioredis.Redis.from_url(url, decode_responses=True)
        sizes = {}
        for name in ("meta", "events", "agents", "checkpoints", "idem", "failures", "tokens"):
            key = getattr(keys, name)
            sizes[name] = int(await admin.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0") or 0)
        stored = int(await admin.xlen(keys.events))
        await admin.aclose()
    payload = SessionEvent.model_validate(event).payload_json()
    raw = len(payload.encode()) + len(event["type"]) + len(agents[0])
    total = sum(sizes.values())
    result = {f"{name} per event": size / stored for name, size in sizes.items()}
    result.update(stored=stored, payload=raw, per_event=total / stored, ratio=total / stored / raw)
    result["events only per event"] = sizes["events"] / stored
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--binary", default=os.environ.get("HUDDLE_REDIS_SERVER"))
    args = parser.parse_args()
    with EmbeddedRedis(binary=args.binary) as server:
        admin = aioredis.Redis.from_url(server.url, decode_responses=True)
        version = (await admin.info("server"))["redis_version"]
        await admin.aclose()
        print(f"redis {version}, {args.events} events emitted per session (defaults), MEMORY USAGE SAMPLES 0")
        for label, event in (("modified (spec)", BIG), ("small", SMALL)):
            r = await measure(server.url, event, args.events, f"mem{label[:3]}")
            print(
                f"{label:16s}: {r['stored']:.0f} events in the log, payload {r['payload']:.0f} B/event, "
                f"session {r['per_event']:.0f} B/event = {r['ratio']:.2f}x payload "
                f"(events stream {r['events only per event']:.0f}, checkpoints "
                f"{r['checkpoints per event']:.0f}, tokens {r['tokens per event']:.0f}, meta+agents "
                f"{r['meta per event'] + r['agents per event']:.0f}, idem {r['idem per event']:.0f} B/event)"
            )


if __name__ == "__main__":
    asyncio.run(main())
