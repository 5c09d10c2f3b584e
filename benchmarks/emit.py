"""Benchmark: the cost of an appended event (issue 12), huddle against raw redis-py baselines in the same run.

Run: ``.venv/bin/python benchmarks/emit.py`` (``make bench``; ``--help`` for the counts). Uses ``HUDDLE_REDIS_URL``
if set, else starts an embedded redis-server. Sides, all in this process on the same server:

- ``huddle``: ``SessionManager.emit_event(sid, event_dict, agent)`` with the defaults (auto-pipelining on);
- ``own``: plain redis-py (``redis.asyncio.Redis.from_url``: a pool, one request per connection) sending the very
  script command huddle sends (recorded from huddle, fresh idempotency tokens): huddle's Python cost;
- ``lean``: plain redis-py EVALSHA of issue 12's lean append script (the issue's baseline);
- ``lean_ap``: the same lean EVALSHAs through huddle's own client (auto-pipelined): the client layer alone;
- ``batch``: ``emit_events`` in batches of 100 from one task (one session, and ``--batch-sessions`` sessions at
  once sharing round trips) against raw pipelined XADDs of the same payloads.

Modes: sequential (one caller) and concurrent (``--agents`` tasks on one session). Each round builds fresh sessions
and runs the sides in alternating blocks (ABBA), so load from other processes hits them alike; medians over the
rounds are reported. Server µs per script call come from ``INFO commandstats`` deltas around every block. Then
bytes per stored event (``MEMORY USAGE``) and, in fresh event loops alternated per round, uvloop against asyncio.
"""

from __future__ import annotations

import os
import sys

# This folder comes first on sys.path when run as a script; a module here named like a standard library one
# would shadow it for every import below (benchmarks/http.py did, now http_api.py). Look here last.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE] + [_HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
from collections.abc import Awaitable, Callable, Sequence  # noqa: E402
from contextlib import AsyncExitStack  # noqa: E402
from typing import Any  # noqa: E402

import redis.asyncio as aioredis  # noqa: E402
from emit_workloads import (  # noqa: E402
    Sample,
    Workload,
    bytes_per_event,
    huddle_batches,
    huddle_emits,
    lean_script,
    own_script,
    raw_xadd_pipeline,
)

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig  # noqa: E402

TARGETS = {
    ("concurrent", "huddle", "lean"): 2.0,  # stretch 2.5
    ("sequential", "huddle", "lean"): 0.75,
    ("concurrent", "huddle", "own"): 0.6,  # issue 2's targets, against huddle's own script
    ("sequential", "huddle", "own"): 0.75,
}
TARGET_BATCH_EVENTS = 50_000
TARGET_SERVER_RATIO = 1.5
TARGET_BYTES_RATIO = 2.0

Factory = Callable[[], Awaitable[Workload]]


def merged(samples: Sequence[Sample]) -> Sample:
    server: dict[str, tuple[int, float]] = {}
    for sample in samples:
        for name, (calls, usec) in sample.server.items():
            was = server.get(name, (0, 0.0))
            server[name] = (was[0] + calls, was[1] + usec)
    return Sample(
        sum(s.events for s in samples),
        sum(s.wall for s in samples),
        sum(s.cpu for s in samples),
        [latency for s in samples for latency in s.latencies],
        server,
    )


async def paired_round(factories: dict[str, Factory], events: int, block: int) -> dict[str, Sample]:
    """Every side on fresh sessions, in alternating blocks (ABBA...)."""
    workloads = {side: await factory() for side, factory in factories.items()}
    blocks: dict[str, list[Sample]] = {side: [] for side in workloads}
    order = list(workloads)
    for n, first in enumerate(range(0, events - block + 1, block)):
        for side in order if n % 2 == 0 else reversed(order):
            blocks[side].append(await workloads[side](block, first))
    return {side: merged(samples) for side, samples in blocks.items()}


def summary(samples: list[Sample], per_call_events: int = 1) -> dict[str, Any]:
    def med(metric: Callable[[Sample], float]) -> float:
        return statistics.median(metric(s) for s in samples)

    return {
        "events_per_round": samples[0].events,
        "throughput": med(lambda s: s.throughput),
        "p50_ms": med(lambda s: s.percentile(0.5)) * 1000,
        "p99_ms": med(lambda s: s.percentile(0.99)) * 1000,
        "client_cpu_us_per_event": med(lambda s: s.cpu_per_event) * 1e6,
        "server_script_us_per_event": med(lambda s: s.script_us_per_call) / per_call_events,
        "server_calls_per_event": med(lambda s: sum(c for n, (c, _) in s.server.items()) / s.events),
    }


async def bench(args: argparse.Namespace, url: str) -> dict[str, Any]:
    config = SessionManagerConfig(redis_url=url, namespace=f"bench{os.urandom(4).hex()}")
    agents = [f"agent-{n:02d}" for n in range(args.agents)]
    cfg = config
    rounds: dict[str, list[dict[str, Sample]]] = {"sequential": [], "concurrent": [], "batch": []}
    async with AsyncExitStack() as stack:
        manager = await stack.enter_async_context(SessionManager(config))
        raw = aioredis.Redis.from_url(url, decode_responses=True)
        stack.push_async_callback(raw.aclose)
        server = await raw.info("server")
        lean_args = (cfg.max_events_per_session, cfg.default_ttl)
        modes: dict[str, tuple[dict[str, Factory], int, int]] = {
            "sequential": (
                {
                    "huddle": lambda: huddle_emits(manager, raw, agents[:1]),
                    "own": lambda: own_script(manager, raw, agents[:1]),
                    "lean": lambda: lean_script(raw, 1, *lean_args),
                    "lean_ap": lambda: lean_script(manager.client, 1, *lean_args),
                },
                args.events,
                args.block,
            ),
            "concurrent": (
                {
                    "huddle": lambda: huddle_emits(manager, raw, agents),
                    "own": lambda: own_script(manager, raw, agents),
                    "lean": lambda: lean_script(raw, len(agents), *lean_args),
                    "lean_ap": lambda: lean_script(manager.client, len(agents), *lean_args),
                },
                args.concurrent_events,
                args.concurrent_block,
            ),
            "batch": (
                {
                    "huddle": lambda: huddle_batches(manager, raw, 1, args.batch),
                    "huddle_many": lambda: huddle_batches(manager, raw, args.batch_sessions, args.batch),
                    "xadd": lambda: raw_xadd_pipeline(raw, args.batch, cfg.max_events_per_session),
                },
                args.batch_events,
                args.batch_block,
            ),
        }
        modes = {mode: plan for mode, plan in modes.items() if mode in args.modes}
        rounds = {mode: rounds[mode] for mode in modes}
        for factories, _events, block in modes.values():  # warm-up: scripts loaded, connections open
            await paired_round(factories, block, block)
        for n in range(args.rounds):
            for mode, (factories, events, block) in modes.items():
                rounds[mode].append(await paired_round(factories, events, block))
            if not args.quiet:
                line = ", ".join(
                    f"{mode} {side} {r[-1][side].throughput:,.0f}/s"
                    for mode, r in rounds.items()
                    for side in r[-1]
                )
                print(f"round {n + 1}/{args.rounds} (load {os.getloadavg()[0]:.2f}): {line}", flush=True)
        memory = await bytes_per_event(manager, raw, cfg.max_events_per_session)

    report: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "redis_version": server.get("redis_version"),
        "python": sys.version.split()[0],
        "rounds": args.rounds,
        "agents": args.agents,
        "load_average": os.getloadavg(),
        "modes": {},
        "memory": memory,
    }
    for mode, mode_rounds in rounds.items():
        per_event = args.batch if mode == "batch" else 1
        entry: dict[str, Any] = {
            side: summary([r[side] for r in mode_rounds], per_event if side.startswith("huddle") else 1)
            for side in mode_rounds[0]
        }
        report["modes"][mode] = entry
    ratios: dict[str, Any] = {}
    for (mode, side, base), target in TARGETS.items():
        if mode not in rounds:
            continue
        per_round = [r[side].throughput / r[base].throughput for r in rounds[mode]]
        ratios[f"{mode} {side}/{base}"] = {
            "ratio": statistics.median(per_round),
            "rounds": per_round,
            "target": target,
        }
    for side in ("huddle", "huddle_many") if "batch" in rounds else ():
        per_round = [r[side].throughput / r["xadd"].throughput for r in rounds["batch"]]
        ratios[f"batch {side}/xadd"] = {
            "ratio": statistics.median(per_round),
            "rounds": per_round,
            "target": None,
        }
    report["ratios"] = ratios
    concurrent = report["modes"].get("concurrent")
    if concurrent is not None:
        batch_mode = report["modes"].get("batch")
        report["server_ratio"] = {
            "huddle_us": concurrent["huddle"]["server_script_us_per_event"],
            "lean_us": concurrent["lean"]["server_script_us_per_event"],
            "batch_us": batch_mode["huddle"]["server_script_us_per_event"] if batch_mode else float("nan"),
        }
        report["server_ratio"]["ratio"] = (
            report["server_ratio"]["huddle_us"] / report["server_ratio"]["lean_us"]
        )
    return report


# -- uvloop against asyncio: each run in a fresh event loop, alternated per round ---------------------------------
async def loop_run(args: argparse.Namespace, url: str) -> dict[str, float]:
    config = SessionManagerConfig(redis_url=url, namespace=f"bench{os.urandom(4).hex()}")
    agents = [f"agent-{n:02d}" for n in range(args.agents)]
    async with SessionManager(config) as manager:
        raw = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            lean_args = (config.max_events_per_session, config.default_ttl)
            factories: dict[str, Factory] = {
                "huddle concurrent": lambda: huddle_emits(manager, raw, agents),
                "lean concurrent": lambda: lean_script(raw, len(agents), *lean_args),
            }
            await paired_round(factories, args.concurrent_block, args.concurrent_block)  # warm-up
            out = {side: s.throughput for side, s in (await paired_round(factories, *args.uv_counts)).items()}
            seq: dict[str, Factory] = {
                "huddle sequential": lambda: huddle_emits(manager, raw, agents[:1]),
                "lean sequential": lambda: lean_script(raw, 1, *lean_args),
            }
            out.update(
                {
                    side: s.throughput
                    for side, s in (await paired_round(seq, args.block * 4, args.block)).items()
                }
            )
            return out
        finally:
            await raw.aclose()


def uvloop_compare(args: argparse.Namespace, url: str) -> dict[str, Any] | None:
    try:
        import uvloop
    except ImportError:
        return None
    runs: dict[str, list[dict[str, float]]] = {"asyncio": [], "uvloop": []}
    for n in range(args.uvloop_rounds):
        for kind in ("asyncio", "uvloop") if n % 2 == 0 else ("uvloop", "asyncio"):
            factory = uvloop.new_event_loop if kind == "uvloop" else asyncio.new_event_loop
            with asyncio.Runner(loop_factory=factory) as runner:
                runs[kind].append(runner.run(loop_run(args, url)))
    out: dict[str, Any] = {}
    for side in runs["asyncio"][0]:
        a = statistics.median(r[side] for r in runs["asyncio"])
        u = statistics.median(r[side] for r in runs["uvloop"])
        out[side] = {"asyncio": a, "uvloop": u, "ratio": u / a}
    return out


def print_report(report: dict[str, Any]) -> None:
    print(f"\n$ {report['command']}")
    load = ", ".join(f"{x:.2f}" for x in report["load_average"])
    print(
        f"redis {report['redis_version']}, python {report['python']}, medians of {report['rounds']} rounds, "
        f"{report['agents']} agents, load average at the end {load}"
    )
    header = (
        f"{'mode':<11} {'side':<12} {'events':>7} {'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'cpu us/ev':>9} {'srv us/ev':>9} {'cmds/ev':>7}"
    )
    print(header)
    print("-" * len(header))
    for mode, entry in report["modes"].items():
        for side, row in entry.items():
            print(
                f"{mode:<11} {side:<12} {row['events_per_round']:>7} {row['throughput']:>9,.0f} "
                f"{row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} {row['client_cpu_us_per_event']:>9.1f} "
                f"{row['server_script_us_per_event']:>9.1f} {row['server_calls_per_event']:>7.1f}"
            )
    print(
        "(srv us/ev: server µs per script call, per event for batches; cmds/ev: every command the server ran,"
    )
    print(" those run inside scripts included)")
    for name, entry in report["ratios"].items():
        rounds = ", ".join(f"{r:.2f}" for r in entry["rounds"])
        target = entry["target"]
        verdict = (
            ""
            if target is None
            else f" (target >= {target}: {'met' if entry['ratio'] >= target else 'MISSED'})"
        )
        print(f"ratio {name:<26} {entry['ratio']:.3f}{verdict}; rounds: {rounds}")
    if "batch" in report["modes"]:
        batch = report["modes"]["batch"]["huddle"]["throughput"]
        verdict = "met" if batch >= TARGET_BATCH_EVENTS else "MISSED"
        print(f"batch append events/s {batch:,.0f} (target >= {TARGET_BATCH_EVENTS:,}: {verdict})")
    server = report.get("server_ratio")
    if server is not None:
        verdict = "met" if server["ratio"] <= TARGET_SERVER_RATIO else "MISSED"
        print(
            f"server µs per event (live, 50 tasks; benchmarks/emit_server.py replays them too): huddle "
            f"{server['huddle_us']:.1f}, lean {server['lean_us']:.1f}, ratio {server['ratio']:.2f} (target <= "
            f"{TARGET_SERVER_RATIO}: {verdict}); emit_events per event {server['batch_us']:.1f}"
        )
    mem = report["memory"]
    ratio = mem["per_event_session"] / mem["payload_bytes"]
    print(
        f"memory: {mem['events']} events, payload {mem['payload_bytes']} B (event JSON {mem['event_json_bytes']} B); "
        f"session keys {mem['per_event_session']:.0f} B/event ({ratio:.2f}x payload, target <= "
        f"{TARGET_BYTES_RATIO}: {'met' if ratio <= TARGET_BYTES_RATIO else 'MISSED'}), events stream "
        f"{mem['per_event_stream']:.0f} B/event, lean script's stream {mem['lean_stream_per_event']:.0f} B/event; "
        f"per key {mem['keys']}"
    )
    uv = report.get("uvloop")
    if uv is None:
        print("uvloop: skipped (--uvloop-rounds 0) or not installed")
    else:
        for side, row in uv.items():
            print(
                f"uvloop {side:<18} asyncio {row['asyncio']:>9,.0f}/s  uvloop {row['uvloop']:>9,.0f}/s  "
                f"x{row['ratio']:.2f}"
            )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add = parser.add_argument
    add("--events", type=int, default=2000, help="sequential events per round and side")
    add("--block", type=int, default=200, help="sequential events per alternating block")
    add("--concurrent-events", type=int, default=10000, help="concurrent events per round and side")
    add("--concurrent-block", type=int, default=1000, help="concurrent events per alternating block")
    add("--agents", type=int, default=50, help="concurrent agents (tasks), one session")
    add("--batch", type=int, default=100, help="events per emit_events call / per XADD pipeline")
    add("--batch-sessions", type=int, default=10, help="sessions appended to at once by the one task")
    add("--batch-events", type=int, default=20000, help="batched events per round and side")
    add("--batch-block", type=int, default=4000, help="batched events per alternating block")
    add("--rounds", type=int, default=5, help="alternating rounds; medians are reported")
    add("--uvloop-rounds", type=int, default=4, help="fresh-loop runs per loop kind (0: skip)")
    add("--profile-run", type=int, default=0, help="only run this many 50-agent huddle emits (for py-spy)")
    add("--modes", default="sequential,concurrent,batch", type=lambda text: text.split(","),
        help="comma-separated subset of sequential,concurrent,batch")  # fmt: skip
    add("--json", action="store_true", help="print the report as JSON")
    add("--check", action="store_true", help="exit 1 if a target is missed")
    add("--quiet", action="store_true", help="no per-round lines")
    args = parser.parse_args(argv)
    if args.concurrent_block % args.agents or args.batch_block % (args.batch * args.batch_sessions):
        parser.error("--concurrent-block must be a multiple of --agents, --batch-block of batch x sessions")
    for name in ("events", "concurrent_events", "batch_events"):
        if getattr(args, name) < getattr(args, name.replace("events", "block")):
            parser.error(f"--{name.replace('_', '-')} must be at least its block")
    args.uv_counts = (args.concurrent_block * 4, args.concurrent_block)
    return args


async def profile_run(args: argparse.Namespace, url: str) -> None:
    """Only huddle's 50-agent emits (for a profiler: ``py-spy record ... -- python benchmarks/emit.py
    --profile-run 100000``; ``benchmarks/spy_summary.py`` summarizes py-spy's raw output)."""
    config = SessionManagerConfig(redis_url=url, namespace=f"bench{os.urandom(4).hex()}")
    agents = [f"agent-{n:02d}" for n in range(args.agents)]
    async with SessionManager(config) as manager:
        raw = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            workload = await huddle_emits(manager, raw, agents)
            await workload(args.concurrent_block, 0)
            sample = await workload(args.profile_run // args.agents * args.agents, 0)
        finally:
            await raw.aclose()
    print(
        f"$ {' '.join(['.venv/bin/python', *sys.argv])}\nhuddle emit_event x{args.agents} agents: "
        f"{sample.throughput:,.0f} events/s, client CPU {sample.cpu_per_event * 1e6:.1f} µs/event, "
        f"server {sample.script_us_per_call:.1f} µs/script call"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    url = os.environ.get("HUDDLE_REDIS_URL")
    server = None if url else EmbeddedRedis().start()
    try:
        url = url or (server.url if server else "")
        if args.profile_run:
            asyncio.run(profile_run(args, url))
            return 0
        report = asyncio.run(bench(args, url))
        report["uvloop"] = uvloop_compare(args, url) if args.uvloop_rounds else None
    finally:
        if server is not None:
            server.stop()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    missed = [
        name for name, e in report["ratios"].items() if e["target"] is not None and e["ratio"] < e["target"]
    ]
    batch_ok = (
        "batch" not in report["modes"]
        or report["modes"]["batch"]["huddle"]["throughput"] >= TARGET_BATCH_EVENTS
    )
    return 1 if args.check and (missed or not batch_ok) else 0


if __name__ == "__main__":
    sys.exit(main())
