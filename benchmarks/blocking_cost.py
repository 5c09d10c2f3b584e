"""Benchmark: where the blocking client's extra cost per call goes (issue 13).

Run: ``.venv/bin/python benchmarks/blocking_cost.py [--calls 2000] [--rounds 5]``. Uses ``HUDDLE_REDIS_URL`` if
set, else an embedded redis-server. One process, one event loop, one ``SessionManager``; CPU µs per
``emit_event`` (``time.process_time``), min and median over alternating blocks:

- ``await``: sequential awaits inside one running loop (what ``await manager.emit_event`` costs);
- ``await + idle turns``: the same, plus three ``asyncio.sleep(0)`` after each call, so the auto-pipeline lane
  sees an idle turn, ends and hands its connection back to the pool, as it does between blocking calls;
- ``run_until_complete``: one ``loop.run_until_complete`` per call, as the blocking client runs a call on a
  thread's own loop.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Callable

from http_api import EVENT, config, redis_url

from huddle import SessionManager


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    calls = args.calls
    with redis_url() as url:
        loop = asyncio.new_event_loop()
        manager = SessionManager(config(url, f"blk{uuid.uuid4().hex[:6]}"))
        session = loop.run_until_complete(manager.create_session("a"))

        async def awaited() -> None:
            for _ in range(calls):
                await manager.emit_event(session, EVENT, "a")

        async def idle_turns() -> None:
            for _ in range(calls):
                await manager.emit_event(session, EVENT, "a")
                for _ in range(3):
                    await asyncio.sleep(0)

        def per_call() -> None:
            for _ in range(calls):
                loop.run_until_complete(manager.emit_event(session, EVENT, "a"))

        modes: dict[str, Callable[[], None]] = {
            "await": lambda: loop.run_until_complete(awaited()),
            "await + idle turns": lambda: loop.run_until_complete(idle_turns()),
            "run_until_complete": per_call,
        }
        cpu: dict[str, list[float]] = {name: [] for name in modes}
        for run in modes.values():
            run()  # warm-up
        for _ in range(args.rounds):
            for name, run in modes.items():
                started = time.process_time()
                run()
                cpu[name].append((time.process_time() - started) / calls * 1e6)
        loop.run_until_complete(manager.close())
        loop.close()
    print("command: .venv/bin/python " + " ".join(sys.argv))
    for name, values in cpu.items():
        print(f"{name}: CPU µs per emit_event min {min(values):.1f}, median {statistics.median(values):.1f}")


if __name__ == "__main__":
    main()
