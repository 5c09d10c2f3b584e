"""Fault runs per fault kind (the tables in docs/reliability.md): runs, faults injected, calls, acknowledged,
retried, lost, doubled, plus subscriber and checkpoint checks, from the history checker in tests/reliability.

    .venv/bin/python -P benchmarks/faults.py --runs 2                    # proxy and crash kinds
    .venv/bin/python -P benchmarks/faults.py --runs 2 --only sentinel    # one family (substring of the name)
    .venv/bin/python -P benchmarks/faults.py --runs 2 --topology         # Sentinel / Cluster / migration kinds
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from reliability.failover import FailoverScenario, run_failover
from reliability.scenario import RunResult, Scenario, run_scenario

KINDS = {
    "cut mid-request": Scenario("cut_request", faults=("cut_request",), min_faults=150),
    "cut mid-reply (ack lost)": Scenario("cut_reply", faults=("cut_reply",), min_faults=150),
    "delay 5-50 ms windows": Scenario("delay", faults=("delay",), min_faults=60, window=(0.1, 0.4)),
    "blackhole 0.3-1.5 s": Scenario("blackhole", faults=("blackhole",), min_faults=15, window=(0.3, 1.5)),
    "reset all connections": Scenario("reset", faults=("reset",), min_faults=150, fault_gap=(0.01, 0.05)),
    "mixed proxy faults": Scenario(
        "mixed",
        faults=("cut_request", "cut_reply", "delay", "blackhole", "reset"),
        min_faults=200,
        fault_gap=(0.002, 0.01),
        window=(0.1, 0.6),
    ),
    "SIGKILL + restart, appendfsync always": Scenario(
        "sigkill-always", faults=(), crash="always", min_faults=10, crash_gap=(0.3, 0.8)
    ),
    "SIGKILL + restart, appendfsync everysec": Scenario(
        "sigkill-everysec", faults=(), crash="everysec", min_faults=10, crash_gap=(0.3, 0.8)
    ),
}


TOPOLOGY_KINDS = {
    "Sentinel: master SIGKILL x3, min_replicas=0": FailoverScenario(
        "sentinel-kill-min0", "sentinel", ("kill",), 3
    ),
    "Sentinel: master SIGKILL x3, min_replicas=1": FailoverScenario(
        "sentinel-kill-min1", "sentinel", ("kill",), 3, min_replicas=1
    ),
    "Sentinel: master paused until replaced, sentinels demote it (~8 s), min_replicas=0": FailoverScenario(
        "sentinel-pause-min0", "sentinel", ("pause",), 1
    ),
    "Sentinel: master paused until replaced, sentinels demote it (~8 s), min_replicas=1": FailoverScenario(
        "sentinel-pause-min1", "sentinel", ("pause",), 1, min_replicas=1
    ),
    "Sentinel: master paused until replaced, sentinels demote it (~8 s), min_replicas=2 (every replica)": (
        FailoverScenario("sentinel-pause-min2", "sentinel", ("pause",), 1, min_replicas=2)
    ),
    "Sentinel: master paused, demoted 0.5 s after it resumes, min_replicas=0": FailoverScenario(
        "sentinel-pausedemote-min0", "sentinel", ("pause",), 2, demote_after=0.5
    ),
    "Sentinel: master paused, demoted 0.5 s after it resumes, min_replicas=1": FailoverScenario(
        "sentinel-pausedemote-min1", "sentinel", ("pause",), 2, min_replicas=1, demote_after=0.5
    ),
    "Sentinel: master paused, demoted 0.5 s after it resumes, min_replicas=2 (every replica)": FailoverScenario(
        "sentinel-pausedemote-min2", "sentinel", ("pause",), 2, min_replicas=2, demote_after=0.5
    ),
    "Cluster: master SIGKILL x3, min_replicas=0": FailoverScenario(
        "cluster-kill-min0", "cluster", ("kill",), 3
    ),
    "Cluster: master SIGKILL x3, min_replicas=1": FailoverScenario(
        "cluster-kill-min1", "cluster", ("kill",), 3, min_replicas=1
    ),
    "Cluster: master paused until replaced x2, min_replicas=0": FailoverScenario(
        "cluster-pause-min0", "cluster", ("pause",), 2
    ),
    "Cluster: master paused until replaced x2, min_replicas=1": FailoverScenario(
        "cluster-pause-min1", "cluster", ("pause",), 2, min_replicas=1
    ),
    "Cluster: slot migration x6 (the session's slot, back and forth)": FailoverScenario(
        "cluster-migrate", "cluster", ("migrate",), 6
    ),
}


async def _run(base: Scenario | FailoverScenario, seed: int) -> RunResult:
    if isinstance(base, FailoverScenario):
        return await run_failover(replace(base, seed=seed))
    return await run_scenario(replace(base, seed=seed))


async def main(runs: int, only: str | None, topology: bool) -> None:
    print("| fault kind | runs | faults injected | calls | acknowledged | retried | lost | doubled | errored "
          "(stored) | subscriber ok | subscriber rolled back / missed | checkpoints checked | problems | seconds |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    every: dict[str, Scenario | FailoverScenario] = {**KINDS, **TOPOLOGY_KINDS}
    family = TOPOLOGY_KINDS if topology else KINDS
    kinds = {title: base for title, base in every.items() if (only in base.name if only else title in family)}
    for title, base in kinds.items():
        results: list[RunResult] = []
        for run in range(runs):
            results.append(await _run(base, 1000 + run))
        reports = [r.report for r in results]
        faults = sum(sum(r.faults.values()) for r in reports)
        subscriber_ok = sum(r.subscriber_events == r.stored_events for r in reports)
        problems = sum(len(r.problems) for r in reports)
        print(
            f"| {title} | {runs} | {faults} | {sum(r.calls for r in reports)} | "
            f"{sum(r.acknowledged for r in reports)} | {sum(r.retried for r in reports)} | "
            f"{sum(r.lost for r in reports)} | {sum(r.doubled for r in reports)} | "
            f"{sum(r.errored for r in reports)} ({sum(r.errored_but_stored for r in reports)}) | "
            f"{subscriber_ok}/{runs} | {sum(r.subscriber_rolled_back for r in reports)} / "
            f"{sum(r.subscriber_missed for r in reports)} | {sum(r.checkpoints_checked for r in reports)} | {problems} | "
            f"{sum(r.seconds for r in results):.0f} |",
            flush=True,
        )
        for result in results:
            for problem in result.report.problems:
                print(f"    problem ({title}): {problem}", flush=True)
            print(f"    errors ({title}, {result.seconds:.0f} s): {dict(result.errors)}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--only", help="run only the kinds whose scenario name contains this (any family)")
    parser.add_argument("--topology", action="store_true", help="the Sentinel / Cluster / migration kinds")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.only, args.topology))
