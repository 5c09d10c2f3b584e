"""A worker process for the shutdown tests: sessions with agents writing events until SIGTERM.

Prints one line per fact, flushed at once, so the test knows what was acknowledged before the signal:
``SESSION <sid>``, ``RECORDING <sid> <replay id>``, ``ACK <sid> <seq>``, ``READY``, ``EVENT <kind> <phase>``,
``STATUS <json>``.
Exits with the shutdown's exit code (0 graceful, 1 forced)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from huddle import (
    HuddleError,
    SessionGracefulShutdown,
    SessionManager,
    SessionManagerConfig,
    ShutdownConfig,
)

EVENT = {
    "type": "modified",
    "change_info": {"element_type": "function", "entity_ids": ["worker.py"], "operation": "modified"},
}


def say(*parts: object) -> None:
    print(*parts, flush=True)


class HangingHealth:
    """A health component whose shutdown never finishes by itself."""

    def mark_not_ready(self, reason: str) -> None:
        say("NOT-READY", reason.replace(" ", "_"))

    async def shutdown(self) -> None:
        await asyncio.Event().wait()


async def write(
    manager: SessionManager, session_id: str, agent: str, acked: dict[str, int], ready: Callable[[], None]
) -> None:
    """Emit until the manager refuses; print every acknowledged seq."""
    while True:
        try:
            seq = await manager.emit_event(session_id, EVENT, agent)
        except HuddleError as exc:
            say("STOPPED", session_id, exc.code)
            return
        acked[session_id] = acked.get(session_id, 0) + 1
        say("ACK", session_id, seq)
        ready()
        await asyncio.sleep(0.002)


async def main(args: argparse.Namespace) -> int:
    config = SessionManagerConfig(redis_url=args.url, namespace=args.namespace)
    manager = await SessionManager(config).connect()
    replay: Any = None
    if args.record:
        from huddle.replay import SessionReplay

        replay = SessionReplay(manager)
    shutdown = SessionGracefulShutdown(
        ShutdownConfig(grace_period=args.grace, instance_id=args.instance, namespace=args.namespace)
    )
    shutdown.on_event(lambda event: say("EVENT", event.kind, event.phase.value))
    await shutdown.initialize(
        session_manager=manager, session_replay=replay, health_check=HangingHealth() if args.hang else None
    )
    sessions = []
    for i in range(args.sessions):
        sid = await manager.create_session(f"agent-{i}")
        say("SESSION", sid)
        sessions.append((sid, f"agent-{i}"))
    if replay is not None:
        sid = sessions[0][0]
        say("RECORDING", sid, await replay.start_recording(sid))
    acked: dict[str, int] = {}
    every_session_written = asyncio.Event()

    def ready() -> None:
        if len(acked) == len(sessions) and min(acked.values()) >= 3:
            every_session_written.set()

    writers = [asyncio.create_task(write(manager, sid, agent, acked, ready)) for sid, agent in sessions]
    await every_session_written.wait()
    say("READY")
    status = await shutdown.wait()
    await asyncio.gather(*writers, return_exceptions=True)
    say("STATUS", status.model_dump_json())
    return status.exit_code


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--record", action="store_true")
    sys.exit(asyncio.run(main(parser.parse_args())))
