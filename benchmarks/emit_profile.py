"""Profile of emit's server time: where the microseconds of one append go, next to issue 12's lean script.

Run: ``.venv/bin/python -P benchmarks/emit_profile.py [--rounds 9] [--binary PATH]`` (Redis 7.0+: functions).
Three tables, every figure the best of ``--rounds`` (the run least disturbed by other load on a shared machine):

1. **per command**: each command emit.lua (and the lean script) runs, called 2,000 times in a loop inside one
   function call, minus the empty loop: what ``redis.call`` of that command costs inside a script;
2. **emit.lua's body**: the body run 500 times in a loop inside one function call (no network, no FCALL
   overhead), cut before a statement (``return`` there), and whole with and without its checkpoint; each loop is
   a real append on a session with 50 agents and a full log, so checkpoints (1 in 10 events) and trims (1 in 31)
   fall due as in production. The lean script's body is run the same way;
3. **call overhead**: an FCALL / EVALSHA that does nothing, with emit's and the lean script's keys and arguments
   (after a full Lua GC: garbage left by the loops above is otherwise collected in steps by the calls after them).

Line 2's cumulative cuts differ by what the statements between them cost; with table 3 they add up to what
``benchmarks/emit_server.py`` measures per call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics

import redis.asyncio as aioredis

from huddle import EmbeddedRedis, SessionEvent, SessionManager, SessionManagerConfig
from huddle.core.scripts import lua_file

LEAN = """local seq = redis.call('HINCRBY', KEYS[1], 'last_seq', 1)
local t = redis.call('TIME')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. seq, 'e', ARGV[1])
redis.call('HSET', KEYS[1], 'updated_at', t[1], 'state', 'working')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', KEYS[3], seq)
return seq"""
EVENT = {
    "type": "modified",
    "changeInfo": {"elementType": "function", "entityIds": ["src/auth/login.ts"], "operation": "updated"},
    "data": {"lines_changed": 42, "reviewer": "frontend-agent"},
}
NOTICE = '{"session_id":"s-0123456789abcdef0123456789abcdef","seq":12345,"type":"modified","actor":"agent-7","last_seq":12345}'
COMMANDS = {
    "HMGET meta, 8 fields (emit)": "redis.call('HMGET', KEYS[1], 'seq','grace','ncp','idx','ver','first','ttl','rt')",
    "HGET agents (emit: membership)": "redis.call('HGET', KEYS[3], 'agent-7')",
    "HINCRBY (lean)": "redis.call('HINCRBY', KEYS[1], 'cnt', 1)",
    "TIME (both)": "redis.call('TIME')",
    "XADD 0-<seq>, 5 fields (emit)": "redis.call('XADD', KEYS[2], '0-' .. (i + base), 't', 'modified', 'a', "
    "'agent-7', 'ts', '1700000000000', 'd', ARGV[1], 'r', 'abcdefghij12')",
    "XADD MAXLEN ~, 1 field (lean)": "redis.call('XADD', KEYS[2], 'MAXLEN', '~', '1000', '0-' .. (i + base), "
    "'e', ARGV[1])",
    "HSET meta, 4 fields (emit)": "redis.call('HSET', KEYS[1], 'updated', '1700000000000', 'ver', '123', 'seq', "
    "'12345', 'ncp', '3')",
    "HSET, 2 fields (lean)": "redis.call('HSET', KEYS[1], 'updated_at', '1700000000', 'state', 'working')",
    "PTTL meta (emit: TTL drift probe)": "redis.call('PTTL', KEYS[1])",
    "EXPIRE (lean, x2)": "redis.call('EXPIRE', KEYS[1], 3600)",
    "PUBLISH notice JSON (emit)": f"redis.call('PUBLISH', 'chan', '{NOTICE}')",
    "PUBLISH seq (lean)": "redis.call('PUBLISH', 'chan', '12345')",
    "ZADD NX + ZREM (round 1's token claim)": "redis.call('ZADD', KEYS[4], 'NX', i, 'tok' .. i) "
    "redis.call('ZREM', KEYS[4], 'tok' .. i)",
    "HKEYS agents, 50 (checkpoint)": "redis.call('HKEYS', KEYS[3])",
    "tonumber x6 (emit: meta numbers)": "local a, b, c, d, e, f = tonumber('12345'), tonumber('3'), "
    "tonumber('1700000000000'), tonumber('123'), tonumber('1'), tonumber('3600')",
    "string.format('%d', n) (a number as text)": "local s = string.format('%d', i + base)",
}
CUTS = (
    "local cfg",  # after the locals taken from ARGV
    "local seq, ncp",  # + settings lookup, HMGET
    "local in_grace",  # + tonumber x6 and the check of the stored numbers
    "local chain",  # + grace, seq text, token mode, completed/membership/expected/transition checks
    "local t = redis",  # + checkpoint/trim/snapshot decisions (reads only when due)
)


def loop_library(n: int) -> str:
    lines = ["#!lua name=h_emit_profile_loops"]
    for i, body in enumerate(["", *COMMANDS.values()]):
        lines.append(
            f"redis.register_function('c{i}', function(KEYS, ARGV) local base = tonumber(ARGV[2]) "
            f"for i = 1, {n} do {body} end return 1 end)"
        )
    return "\n".join(lines) + "\n"


def body_library(n: int) -> tuple[str, list[str]]:
    """One function per variant of emit.lua's body, looped ``n`` times; plus the lean body and empty calls."""
    body = lua_file("emit")
    lines = body.split("\n")
    variants: list[tuple[str, str]] = []
    for marker in CUTS:
        stop = next(j for j, line in enumerate(lines) if line.startswith(marker))
        variants.append((f"cut before '{marker}'", "\n".join(lines[:stop]) + "\nreturn 1"))
    no_cp = body.replace("local auto_cp = cfg.interval > 0 and ncp >= cfg.interval", "local auto_cp = false")
    variants += [("whole body without auto-checkpoints", no_cp), ("whole body", body)]
    out = [
        "#!lua name=h_emit_profile_body",
        "local KEYS, ARGV = {}, {}",
        lua_file("common"),
        lua_file("emit_common"),
        "PERSISTENT = true",
    ]
    for i, (_, text) in enumerate(variants):
        out += [
            f"local function body{i}()",
            text,
            "end",
            f"redis.register_function('b{i}', function(keys, args)",
            "KEYS, ARGV = keys, args",
            "K_META, K_EVENTS, K_AGENTS, K_CPS, K_IDEM, K_FAIL = keys[1], keys[2], keys[3], keys[4], keys[5], "
            "keys[6]",
            f"for i = 1, {n} do body{i}() end return 1",
            "end)",
        ]
    out += [
        "local function lean_body()",
        LEAN,
        "end",
        f"redis.register_function('lean_loop', function(keys, args) KEYS, ARGV = keys, args "
        f"for i = 1, {n} do lean_body() end return 1 end)",
        "redis.register_function('nothing', function(keys, args) return 1 end)",
        "redis.register_function('gc', function(keys, args) collectgarbage('collect') return 1 end)",
    ]
    return "\n".join(out) + "\n", [label for label, _ in variants]


async def usec_of(admin: aioredis.Redis, *call: object) -> float:
    """usec of one FCALL / EVALSHA as commandstats records it."""
    await admin.config_resetstat()
    await admin.execute_command(*call)
    stats = await admin.info("commandstats")
    return sum(float(v["usec"]) for k, v in stats.items() if k in ("cmdstat_fcall", "cmdstat_evalsha"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--binary", default=os.environ.get("HUDDLE_REDIS_SERVER"))
    args = parser.parse_args()
    n_cmd, n_body, n_call = 2000, 500, 2000
    with EmbeddedRedis(binary=args.binary) as server:
        admin = aioredis.Redis.from_url(server.url, decode_responses=True)
        version = (await admin.info("server"))["redis_version"]
        config = SessionManagerConfig(redis_url=server.url, namespace="prof")
        async with SessionManager(config) as manager:
            agents = [f"agent-{i}" for i in range(50)]
            sid = await manager.create_session(agents[0])
            for agent in agents[1:]:
                await manager.join_session(sid, agent)
            for i in range(1100):
                await manager.emit_event(sid, EVENT, agents[i % 50])
            keys = manager.keys.session(sid)
            settings = await manager.emit_settings()
            payload = SessionEvent.model_validate(EVENT).payload_json()
            await admin.function_load(loop_library(n_cmd), replace=True)
            library, labels = body_library(n_body)
            await admin.function_load(library, replace=True)
            nothing_sha = await admin.script_load("return 1")
            ks = ["p:{x}:m", "p:{x}:e", keys.agents, "p:{x}:z"]
            await admin.hset(ks[0], mapping={"seq": "1", "layout": "x" * 70})
            await admin.expire(ks[0], 3600)
            emit_args = (sid, "agent-7", "modified", payload, "tok", "", "", "", settings, keys.channel, "f")
            lean_keys = ("l:{x}:meta", "l:{x}:events", "l:{x}:channel")
            cmd: dict[str, list[float]] = {label: [] for label in ["", *COMMANDS]}
            body: dict[str, list[float]] = {label: [] for label in [*labels, "lean script's body"]}
            calls: dict[str, list[float]] = {"emit": [], "lean": [], "lean evalsha": []}
            base = 1
            for r in range(args.rounds):
                for i, label in enumerate(cmd):
                    usec = await usec_of(admin, "FCALL", f"c{i}", 4, *ks, payload, base)
                    cmd[label].append(usec / n_cmd)
                    base += n_cmd
                    await admin.xtrim(ks[1], maxlen=1000)
                for i, label in enumerate(labels):
                    token = f"t{r}-{i}"
                    usec = await usec_of(admin, "FCALL", f"b{i}", 7, *keys.emit, *emit_args[:4], token,
                                         *emit_args[5:])  # fmt: skip
                    body[label].append(usec / n_body)
                usec = await usec_of(admin, "FCALL", "lean_loop", 3, *lean_keys, payload, 3600, 1000)
                body["lean script's body"].append(usec / n_body)
                for label, call in (
                    ("emit", ("FCALL", "nothing", 7, *keys.emit, *emit_args)),
                    ("lean", ("FCALL", "nothing", 3, *lean_keys, payload, 3600, 1000)),
                    ("lean evalsha", ("EVALSHA", nothing_sha, 3, *lean_keys, payload, 3600, 1000)),
                ):
                    await admin.fcall("gc", 0)  # the loops' garbage would be collected by the next calls
                    await admin.config_resetstat()
                    pipe = admin.pipeline(transaction=False)
                    for _ in range(n_call):
                        pipe.execute_command(*call)
                    await pipe.execute()
                    stats = await admin.info("commandstats")
                    name = "cmdstat_evalsha" if call[0] == "EVALSHA" else "cmdstat_fcall"
                    calls[label].append(float(stats[name]["usec_per_call"]))
        await admin.aclose()
    empty = min(cmd[""])
    print(
        f"redis {version}; best of {args.rounds} rounds (median in brackets); load {os.getloadavg()[0]:.1f}"
    )
    print(f"\n1. per command, inside a script (usec; loop of {n_cmd}, empty loop {empty:.3f} subtracted)")
    for label in COMMANDS:
        print(f"   {label:45s} {min(cmd[label]) - empty:6.2f}  ({statistics.median(cmd[label]) - empty:.2f})")
    print(f"\n2. emit.lua's body per append, looped {n_body} times in one call (usec, cumulative)")
    for label, values in body.items():
        print(f"   {label:45s} {min(values):6.2f}  ({statistics.median(values):.2f})")
    print("\n3. a call that does nothing: FCALL / EVALSHA overhead per call (usec_per_call)")
    print(f"   {'emit: 7 keys + 11 arguments (FCALL)':45s} {min(calls['emit']):6.2f}")
    print(f"   {'lean: 3 keys + 3 arguments (FCALL)':45s} {min(calls['lean']):6.2f}")
    print(f"   {'lean: 3 keys + 3 arguments (EVALSHA)':45s} {min(calls['lean evalsha']):6.2f}")
    whole, lean = min(body["whole body"]), min(body["lean script's body"])
    print(
        f"\nbody + call overhead: emit {whole + min(calls['emit']):.2f}, lean {lean + min(calls['lean evalsha']):.2f}"
        f" usec (EVALSHA) -> {(whole + min(calls['emit'])) / (lean + min(calls['lean evalsha'])):.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
