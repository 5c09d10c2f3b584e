"""Fault runs per fault kind (the table in docs/reliability.md): runs, faults injected, calls, acknowledged,
retried, lost, doubled, plus subscriber and checkpoint checks, from the history checker in tests/reliability.

    .venv/bin/python -P benchmarks/faults.py --runs 2
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

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


async def main(runs: int, only: str | None) -> None:
    print("| fault kind | runs | faults injected | calls | acknowledged | retried | lost | doubled | errored "
          "(stored) | subscriber ok | checkpoints checked | problems | seconds |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for title, base in KINDS.items():
        if only and only not in base.name:
            continue
        results: list[RunResult] = []
        for run in range(runs):
            results.append(await run_scenario(replace(base, seed=1000 + run)))
        reports = [r.report for r in results]
        faults = sum(sum(r.faults.values()) for r in reports)
        subscriber_ok = sum(r.subscriber_events == r.stored_events for r in reports)
        problems = sum(len(r.problems) for r in reports)
        print(
            f"| {title} | {runs} | {faults} | {sum(r.calls for r in reports)} | "
            f"{sum(r.acknowledged for r in reports)} | {sum(r.retried for r in reports)} | "
            f"{sum(r.lost for r in reports)} | {sum(r.doubled for r in reports)} | "
            f"{sum(r.errored for r in reports)} ({sum(r.errored_but_stored for r in reports)}) | "
            f"{subscriber_ok}/{runs} | {sum(r.checkpoints_checked for r in reports)} | {problems} | "
            f"{sum(r.seconds for r in results):.0f} |",
            flush=True,
        )
        for report in reports:
            for problem in report.problems:
                print(f"    problem ({title}): {problem}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--only", help="run only the kinds whose scenario name contains this")
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.only))
