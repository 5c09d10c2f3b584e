"""A writer in its own process: creates sessions, appends events and records them through the library.

Usage: ``python writer.py REDIS_URL NAMESPACE [MAX_EVENTS_PER_SESSION]`` then one JSON command per stdin line; prints one JSON result
per line (flushed) so the test can go on as soon as a step is acknowledged:
``{"op": "create", "session_id", "agent_id", "metadata"?}``, ``{"op": "join", "session_id", "agent_id"}``,
``{"op": "emit", "session_id", "actor", "events": [...]}``, ``{"op": "record", "session_id"}`` (records the
whole log from seq 1 and stops; prints the replay id), ``{"op": "get", "session_id"}`` (the document),
``{"op": "complete", "session_id", "actor"}``."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from huddle import SessionManager, SessionManagerConfig, SessionReplay


async def run(manager: SessionManager, command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    sid = command["session_id"]
    if op == "create":
        created = await manager.create_session(
            command["agent_id"], session_id=sid, metadata=command.get("metadata")
        )
        return {"session_id": created}
    if op == "join":
        return {"joined": await manager.join_session(sid, command["agent_id"])}
    if op == "emit":
        seqs = await manager.emit_events(sid, command["events"], command["actor"])
        return {"seqs": list(seqs)}
    if op == "record":
        async with SessionReplay(manager) as replay:
            await replay.start_recording(sid, from_start=True, follow=False)
            return {"replay_id": await replay.stop_recording(sid)}
    if op == "get":
        return (await manager.get_session(sid)).model_dump(mode="json")
    if op == "complete":
        return {"seq": await manager.complete_session(sid, command["actor"])}
    raise ValueError(f"unknown op {op!r}")


async def main(redis_url: str, namespace: str, max_events: int | None) -> None:
    values: dict[str, Any] = {"redis_url": redis_url, "namespace": namespace}
    if max_events is not None:
        values["max_events_per_session"] = max_events
    config = SessionManagerConfig(**values)
    async with SessionManager(config) as manager:
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if not line.strip():
                continue
            try:
                result = await run(manager, json.loads(line))
            except Exception as exc:  # report to the test, which fails with the message
                result = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None))
