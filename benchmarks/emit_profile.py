"""Profile of emit.lua's server time: where the microseconds of one append go (Redis 7.0+, functions).

Run: ``.venv/bin/python -P benchmarks/emit_profile.py [--calls 2000] [--rounds 9]``.
Loads, next to huddle's own library, a probe library with one function per cut point: emit.lua's body up to
(not including) a top-level statement, then ``return {1}``. Cut variants append to a scratch stream in the same
slot (``<events key>x``, auto ids) so that repeating them never breaks the log's seq order. Each variant (and the
lean script of issue 12) is called ``--calls`` times per round in pipelines on a session with 50 agents and a
full log; the minimum ``usec_per_call`` over the rounds (the run least disturbed by other load) is printed,
cumulative: the difference between two lines is what the statements between the cuts cost. Cut variants do not
advance the session's seq, so the checkpoints and trims that fall due only show in the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics

import redis.asyncio as aioredis

from huddle import EmbeddedRedis, SessionEvent, SessionManager, SessionManagerConfig
from huddle.core.scripts import lua_file

CUTS = (
    ("FCALL with 7 keys and 19 arguments, doing nothing", "local sid, actor"),
    ("+ HMGET of 7 meta fields", "local seq = tonumber"),
    ("+ retry token ZADD NX", "if status == 'completed'"),
    ("+ membership HGET, checks", "local state, broken, md"),
    ("+ TIME, XADD of 4 fields", "local refresh_ms"),
    ("+ last_seen check, meta fields, transition/failure checks", "local event_seq"),
    ("+ checkpoint/trim checks (cuts never advance seq: nothing falls due)", "if seq ~= event_seq"),
    ("+ HSET meta, PTTL, PUBLISH, reply; checkpoints (1 in 10), trims (1 in 31)", None),
)
LEAN = """local seq = redis.call('HINCRBY', KEYS[1], 'last_seq', 1)
local t = redis.call('TIME')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. seq, 'e', ARGV[1])
redis.call('HSET', KEYS[1], 'updated_at', t[1], 'state', 'working')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', KEYS[3], seq)
return seq"""
EVENT = {"type": "modified", "changeInfo": {"elementType": "function", "operation": "updated"}}


def probe_library() -> str:
    """One function per cut (``cut0`` ...), plus ``lean``; bound like huddle's own library."""
    lines = lua_file("emit").split("\n")
    out = ["#!lua name=huddle_emit_probe", "local KEYS, ARGV = {}, {}", lua_file("common")]
    for index, (_, marker) in enumerate(CUTS):
        if marker is None:
            body = "\n".join(lines)
        else:
            stop = next(i for i, line in enumerate(lines) if line.startswith(marker))
            body = "\n".join(lines[:stop]).replace("K_EVENTS, '0-' .. seq_s", "K_EVENTS .. 'x', '*'")
            body += "\nreturn {1}"
        out += [
            f"redis.register_function('cut{index}', function(keys, args)",
            "KEYS, ARGV = keys, args",
            "K_META, K_EVENTS, K_AGENTS, K_CPS, K_IDEM, K_FAIL = keys[1], keys[2], keys[3], keys[4], keys[5], keys[6]",
            body,
            "end)",
        ]
    out += ["redis.register_function('lean', function(KEYS, ARGV)", LEAN, "end)"]
    return "\n".join(out) + "\n"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    with EmbeddedRedis() as server:
        config = SessionManagerConfig(redis_url=server.url, namespace="bench")
        admin = aioredis.Redis.from_url(server.url, decode_responses=True)
        async with SessionManager(config) as manager:
            agents = [f"agent-{i}" for i in range(50)]
            sid = await manager.create_session(agents[0])
            for agent in agents[1:]:
                await manager.join_session(sid, agent)
            for i in range(1200):
                await manager.emit_event(sid, EVENT, agents[i % 50])
            await admin.function_load(probe_library(), replace=True)
            keys = manager.keys.session(sid)
            payload = SessionEvent.model_validate(EVENT).payload_json()
            actors = itertools.cycle(agents)
            names = [f"cut{i}" for i in range(len(CUTS))] + ["lean"]
            results: dict[str, list[float]] = {name: [] for name in names}
            for _ in range(args.rounds):
                for name in names:
                    await admin.config_resetstat()
                    pipe = admin.pipeline(transaction=False)
                    for _ in range(args.calls):
                        if name == "lean":
                            pipe.fcall("lean", 3, "l:{x}:m", "l:{x}:e", "l:{x}:c", payload, 3600, 1000)
                            continue
                        pipe.fcall(
                            name, 7, *keys.emit, sid, next(actors), "modified", payload, os.urandom(8).hex(),
                            "", "", "", 1, config.checkpoint_interval, config.max_events_per_session,
                            keys.channel, "broken", str(config.failure_snapshot_ttl * 1000), 50,
                            config.index_refresh_ms, config.max_checkpoints_per_session, "PUBLISH", "",
                        )  # fmt: skip
                    await pipe.execute()
                    stats = await admin.info("commandstats")
                    results[name].append(float(stats["cmdstat_fcall"]["usec_per_call"]))
        version = (await admin.info("server"))["redis_version"]
        await admin.aclose()
    print(f"redis {version}, {args.calls} calls x {args.rounds} rounds, usec per call (min / median)")
    for (label, _), name in zip(CUTS, names, strict=False):
        values = results[name]
        print(f"{label:75s} {min(values):6.2f} / {statistics.median(values):6.2f}")
    lean = results["lean"]
    print(f"{'lean append script of issue 12':75s} {min(lean):6.2f} / {statistics.median(lean):6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
