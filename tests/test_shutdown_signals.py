"""Signals end a real worker process: graceful exit 0 with checkpoints and recovery data, or forced exit 1."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from huddle import EmbeddedRedis, SessionGracefulShutdown, SessionManager, ShutdownConfig

WORKER = Path(__file__).parent / "workers" / "shutdown_worker.py"
MakeManager = Callable[..., Awaitable[SessionManager]]


@dataclass
class WorkerRun:
    """What a worker printed and how it ended."""

    instance: str
    returncode: int = -1
    sessions: list[str] = field(default_factory=list)
    recordings: dict[str, str] = field(default_factory=dict)
    acked: dict[str, list[int]] = field(default_factory=dict)
    status: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def _read(run: WorkerRun, line: str) -> None:
    run.lines.append(line)
    kind, _, rest = line.partition(" ")
    if kind == "SESSION":
        run.sessions.append(rest)
    elif kind == "RECORDING":
        sid, replay_id = rest.split()
        run.recordings[sid] = replay_id
    elif kind == "ACK":
        sid, seq = rest.split()
        run.acked.setdefault(sid, []).append(int(seq))
    elif kind == "STATUS":
        run.status = json.loads(rest)


def run_worker(
    server: EmbeddedRedis, namespace: str, *args: str, signals: int = 1, limit: float = 40
) -> WorkerRun:
    """Start the worker, wait for READY, send SIGTERM ``signals`` times, collect everything it printed."""
    run = WorkerRun(instance=f"w-{uuid.uuid4().hex[:8]}")
    command = [sys.executable, str(WORKER), "--url", server.url, "--namespace", namespace]
    process = subprocess.Popen(
        [*command, "--instance", run.instance, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            _read(run, raw.strip())
            if raw.startswith("READY"):
                break
        else:
            raise AssertionError(
                f"worker ended before READY: {process.stderr.read() if process.stderr else ''}"
            )
        process.send_signal(signal.SIGTERM)
        if signals > 1:  # the second signal only once the first one has visibly started the shutdown
            for raw in process.stdout:
                _read(run, raw.strip())
                if raw.startswith("EVENT phase draining"):
                    break
            process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=limit)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    for line in out.splitlines():
        _read(run, line.strip())
    run.returncode = process.returncode
    assert run.status, f"worker printed no status; stderr: {err[-2000:]}"
    return run


async def test_sigterm_exits_zero_with_a_checkpoint_of_every_session_and_recovery_data(
    redis_server: EmbeddedRedis, namespace: str, make_manager: MakeManager
) -> None:
    run = await asyncio.to_thread(run_worker, redis_server, namespace, "--sessions", "3", "--grace", "15")
    assert run.returncode == 0, run.status
    assert run.status["phase"] == "complete"
    assert run.status["signal"] == "SIGTERM"
    reader = await make_manager()
    for sid in run.sessions:
        newest = (await reader.get_checkpoints(sid, limit=1))[0]
        assert newest.reason == "shutdown"
        assert newest.seq > max(run.acked[sid])
    later = SessionGracefulShutdown(
        ShutdownConfig(instance_id=run.instance, namespace=namespace, handle_signals=False)
    )
    data = await (await later.initialize(session_manager=reader)).get_recovery_data()
    assert data is not None
    assert sorted(data.checkpoint_ids) == sorted(run.sessions)
    for session in data.sessions:
        assert session.checkpoint_seq == (await reader.get_checkpoints(session.session_id, limit=1))[0].seq


async def test_no_acknowledged_event_is_lost_across_sigterm(
    redis_server: EmbeddedRedis, namespace: str, make_manager: MakeManager
) -> None:
    run = await asyncio.to_thread(run_worker, redis_server, namespace, "--sessions", "2", "--grace", "15")
    reader = await make_manager()
    for sid, seqs in run.acked.items():
        stored = {event.seq: event for event in await reader.get_events(sid)}
        assert seqs == sorted(set(seqs))
        assert all(stored[seq].type == "modified" for seq in seqs)


async def test_a_recording_in_progress_is_finished_and_listed_for_recovery(
    redis_server: EmbeddedRedis, namespace: str, make_manager: MakeManager
) -> None:
    pytest.importorskip("huddle.replay")
    run = await asyncio.to_thread(
        run_worker, redis_server, namespace, "--sessions", "2", "--record", "--grace", "15"
    )
    assert run.returncode == 0, run.status
    ((sid, replay_id),) = run.recordings.items()
    reader = await make_manager()
    later = SessionGracefulShutdown(
        ShutdownConfig(instance_id=run.instance, namespace=namespace, handle_signals=False)
    )
    data = await (await later.initialize(session_manager=reader)).get_recovery_data()
    assert data is not None
    assert [(r.session_id, r.replay_id, r.status) for r in data.recordings] == [(sid, replay_id, "stopped")]
    from huddle.replay import SessionReplay

    async with SessionReplay(reader) as replay:
        info = await replay.get_replay(replay_id)
        assert info is not None
        assert info.status != "recording"
        assert info.last_seq >= max(run.acked[sid])


async def test_a_hanging_component_makes_the_worker_exit_forced_within_the_grace_period(
    redis_server: EmbeddedRedis, namespace: str
) -> None:
    run = await asyncio.to_thread(
        run_worker, redis_server, namespace, "--sessions", "1", "--hang", "--grace", "2", limit=20
    )
    assert run.returncode == 1
    assert run.status["phase"] == "forced"
    assert "did not finish" in run.status["forced_reason"]
    assert run.status["sessions_checkpointed"] == 1


async def test_a_second_sigterm_forces_the_shutdown_at_once(
    redis_server: EmbeddedRedis, namespace: str
) -> None:
    run = await asyncio.to_thread(
        run_worker,
        redis_server,
        namespace,
        "--sessions",
        "1",
        "--hang",
        "--grace",
        "600",
        signals=2,
        limit=30,
    )
    assert run.returncode == 1
    assert run.status["phase"] == "forced"
    assert run.status["forced_reason"] == "second signal SIGTERM during shutdown"
