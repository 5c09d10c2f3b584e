"""Benchmark: session replay on a standard workload (1,000 events from 3 agents, realistic payloads).

Run: ``.venv/bin/python benchmarks/replay.py`` (``--rounds``, ``--events``). Uses ``HUDDLE_REDIS_URL`` if set,
else starts an embedded redis-server. Everything runs in one process on one server; rounds alternate
(plain, recorded, recorded, plain, ...) and medians over rounds are reported.

Measured, per round:
- recording overhead: ``emit_event`` throughput of 3 agents (3 managers, concurrent) while a ``SessionReplay``
  in the same process follows the stream, against the same workload with no recording;
- storage: the recording's bytes in Redis (frame blocks) against a full state per frame (both measured by the
  recorder: ``raw_bytes`` is the size each frame would have with its full state instead of a delta);
- reconstruction: frames/s of ``play_replay`` unpaced (speed 0), with and without state validation, against a
  raw redis-py XRANGE + json.loads of the same events (the baseline: reading events without rebuilding state).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from huddle import (
    EmbeddedRedis,
    ReplayConfig,
    ReplayOptions,
    SessionManager,
    SessionManagerConfig,
    SessionReplay,
    StateConflictError,
)

TARGET_REDUCTION = 0.85
TARGET_OVERHEAD = 0.15
TARGET_FRAMES_PER_S = 50_000
FLOOR_FRAMES_PER_S = 25_000
AGENTS = ("frontend-agent", "backend-agent", "testing-agent")
METADATA = {
    "feature": "user-authentication",
    "repository": "git@example.com:acme/webapp.git",
    "branch": "feature/refresh-tokens",
    "ticket": "AUTH-1423",
    "labels": ["security", "backend", "frontend"],
    "owner": {"team": "identity", "lead": "ana"},
}


def event(agent: int, n: int) -> dict[str, Any]:
    """A realistic agent event: what changed, which entities, impact, a little free-form data."""
    area = ("components", "api", "tests")[agent]
    return {
        "type": "modified",
        "change_info": {
            "element_type": ("component", "function", "test")[agent],
            "entity_ids": [f"src/{area}/auth/module_{n % 37}.ts", f"src/{area}/shared/util_{n % 11}.ts"],
            "operation": ("updated", "refactored", "added")[n % 3],
            "description": f"{AGENTS[agent]} step {n}: validate the refresh token before issuing a new one",
        },
        "impact": {
            "severity": ("low", "medium", "high")[n % 3],
            "affected_entities": [f"auth_{n % 7}.test.ts"],
        },
        "data": {"lines_changed": (n * 7) % 120 + 1, "duration_ms": (n * 13) % 900},
    }


@dataclass
class Round:
    emit_s: float
    stop_s: float
    events: int
    replay_id: str | None
    cpu_s: float
    """CPU time of this process (emitters + recorder) during the emits."""


async def workload(managers: list[SessionManager], sid: str, events: int) -> int:
    """3 agents, each in its own manager, emit concurrently; ~5% of events are state transitions."""
    per_agent = events // len(managers)

    async def agent(number: int) -> int:
        manager, actor, written = managers[number], AGENTS[number], 0
        for n in range(per_agent):
            if n % 20 == 19:
                current = (await manager.get_session(sid)).state
                target = "broken" if current == "working" else "working"
                try:
                    await manager.emit_event(
                        sid, {"type": "broke" if target == "broken" else "fixed",
                              "state_transition": {"from": current, "to": target}}, actor,
                    )  # fmt: skip
                    written += 1
                except StateConflictError:
                    pass
            else:
                await manager.emit_event(sid, event(number, n), actor)
                written += 1
        return written

    return sum(await asyncio.gather(*(agent(n) for n in range(len(managers)))))


async def one_round(
    managers: list[SessionManager], replay: SessionReplay, events: int, record: bool
) -> Round:
    sid = await managers[0].create_session(AGENTS[0], metadata=METADATA, record=record)
    for number in range(1, len(managers)):
        await managers[number].join_session(sid, AGENTS[number])
    started, cpu = time.perf_counter(), time.process_time()
    written = await workload(managers, sid, events)
    emit_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    replay_id = None
    stop_started = time.perf_counter()
    if record:
        replay_id = await replay.stop_recording(sid)
    stop_s = time.perf_counter() - stop_started
    await managers[0].complete_session(sid, AGENTS[0])
    return Round(emit_s, stop_s, written, replay_id, cpu_s)


async def playback_rate(replay: SessionReplay, replay_id: str, validate: bool) -> tuple[float, int]:
    session = await replay.start_replay(replay_id, ReplayOptions(speed=0, validate_state=validate))
    count = 0

    def on_frame(frame: object, n: int) -> None:
        nonlocal count
        count += 1

    started = time.perf_counter()
    await replay.play_replay(session, on_frame)
    return count / (time.perf_counter() - started), count


async def raw_read_rate(manager: SessionManager, sid: str) -> float:
    """Baseline: redis-py XRANGE of the whole log + json.loads of each body (no state, no checks)."""
    started = time.perf_counter()
    entries = await manager.client.xrange(manager.keys.session(sid).events, "-", "+")
    for _, fields in entries:
        json.loads(fields["d"])
    return len(entries) / (time.perf_counter() - started)


async def bench(config: SessionManagerConfig, rounds: int, events: int) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        managers = [await stack.enter_async_context(SessionManager(config)) for _ in AGENTS]
        replay = await stack.enter_async_context(SessionReplay(managers[0], ReplayConfig()))
        await one_round(managers, replay, 60, True)  # warm-up: scripts, connections
        plain: list[Round] = []
        recorded: list[Round] = []
        for number in range(rounds):
            order = (False, True) if number % 2 == 0 else (True, False)
            for record in order:
                (recorded if record else plain).append(await one_round(managers, replay, events, record))
        infos = [await replay.get_replay(r.replay_id) for r in recorded if r.replay_id]
        rates_valid, rates_fast, raw_rates = [], [], []
        for info in infos:
            assert info is not None
            for _ in range(3):
                rates_valid.append((await playback_rate(replay, info.replay_id, True))[0])
                rates_fast.append((await playback_rate(replay, info.replay_id, False))[0])
        # The raw baseline needs an untrimmed log of the same size: one more session, not recorded.
        sid = await managers[0].create_session(AGENTS[0], metadata=METADATA)
        for number in range(1, len(managers)):
            await managers[number].join_session(sid, AGENTS[number])
        await workload(managers, sid, min(events, config.max_events_per_session - 50))
        for _ in range(9):
            raw_rates.append(await raw_read_rate(managers[0], sid))
        verify_ok = all([(await replay.verify_replay(i.replay_id)).ok for i in infos if i is not None])
        stats = await replay.get_replay_stats()
    plain_tp = statistics.median(r.events / r.emit_s for r in plain)
    rec_tp = statistics.median(r.events / r.emit_s for r in recorded)
    # Each pair ran back to back, so it saw the same machine load: the median of per-pair ratios is the
    # robust figure on a shared machine.
    pair_overheads = [
        1 - (rec.events / rec.emit_s) / (base.events / base.emit_s)
        for base, rec in zip(plain, recorded, strict=True)
    ]
    cpu_plain = statistics.median(r.cpu_s / r.events for r in plain)
    cpu_rec = statistics.median(r.cpu_s / r.events for r in recorded)
    raw_bytes = statistics.median(i.raw_bytes for i in infos if i)
    stored = statistics.median(i.stored_bytes for i in infos if i)
    return {
        "rounds": rounds,
        "events_per_round": statistics.median(r.events for r in recorded),
        "frames_per_recording": statistics.median(i.frames for i in infos if i),
        "emit_throughput_plain": plain_tp,
        "emit_throughput_recording": rec_tp,
        "recording_overhead": statistics.median(pair_overheads),
        "overhead_of_medians": 1 - rec_tp / plain_tp,
        "client_cpu_us_per_event_plain": cpu_plain * 1e6,
        "client_cpu_us_per_event_recording": cpu_rec * 1e6,
        "stop_recording_s": statistics.median(r.stop_s for r in recorded),
        "raw_bytes": raw_bytes,
        "stored_bytes": stored,
        "storage_reduction": 1 - stored / raw_bytes,
        "stats_storage_reduction_all_recordings": stats.storage_reduction,
        "playback_frames_per_s_validated": statistics.median(rates_valid),
        "playback_frames_per_s_unvalidated": statistics.median(rates_fast),
        "raw_xrange_events_per_s": statistics.median(raw_rates),
        "all_recordings_verify": verify_ok,
    }


def report(result: dict[str, Any]) -> bool:
    r = result
    print(f"workload: {r['events_per_round']:.0f} events/round from 3 agents (3 managers), {r['rounds']} rounds "
          f"per side, {r['frames_per_recording']:.0f} frames per recording")  # fmt: skip
    print(f"emit throughput   plain {r['emit_throughput_plain']:9.0f} ev/s   recording {r['emit_throughput_recording']:9.0f} ev/s"
          f"   overhead {r['recording_overhead']:6.1%}  (target < {TARGET_OVERHEAD:.0%})")  # fmt: skip
    print(f"                  (overhead = median over {r['rounds']} back-to-back pairs; of the medians: "
          f"{r['overhead_of_medians']:.1%})")  # fmt: skip
    print(f"client CPU        plain {r['client_cpu_us_per_event_plain']:7.1f} us/event   recording "
          f"{r['client_cpu_us_per_event_recording']:7.1f} us/event (emitters + recorder, one process)")  # fmt: skip
    print(f"stop_recording    {r['stop_recording_s'] * 1000:7.1f} ms (drain + finish)")
    print(f"storage           full state/frame {r['raw_bytes']:9.0f} B   stored {r['stored_bytes']:9.0f} B   "
          f"reduction {r['storage_reduction']:6.1%}  (target >= {TARGET_REDUCTION:.0%})")  # fmt: skip
    print(f"playback          validated {r['playback_frames_per_s_validated']:9.0f} frames/s   "
          f"unvalidated {r['playback_frames_per_s_unvalidated']:9.0f} frames/s  "
          f"(target >= {TARGET_FRAMES_PER_S:,}, floor {FLOOR_FRAMES_PER_S:,})")  # fmt: skip
    ratio = r["playback_frames_per_s_validated"] / r["raw_xrange_events_per_s"]
    print(f"baseline          raw redis-py XRANGE + json.loads {r['raw_xrange_events_per_s']:9.0f} events/s   "
          f"validated playback / raw read = {ratio:.2f}")  # fmt: skip
    print(f"verify            every recording verifies: {r['all_recordings_verify']}")
    return (
        r["storage_reduction"] >= TARGET_REDUCTION
        and r["recording_overhead"] < TARGET_OVERHEAD
        and r["playback_frames_per_s_validated"] >= FLOOR_FRAMES_PER_S
        and r["all_recordings_verify"]
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON too")
    args = parser.parse_args()
    async with AsyncExitStack() as stack:
        url = os.environ.get("HUDDLE_REDIS_URL")
        if not url:
            server = await stack.enter_async_context(EmbeddedRedis())
            url = server.url
            print(f"embedded redis-server {server.version()} at {url}", file=sys.stderr)
        config = SessionManagerConfig(redis_url=url, namespace=f"bench-replay-{os.getpid()}")
        result = await bench(config, args.rounds, args.events)
    ok = report(result)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
