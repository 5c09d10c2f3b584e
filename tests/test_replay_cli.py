"""``huddle replay ...`` runs for real (subprocesses, the test redis-server or an embedded one)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig, SessionReplay


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "huddle", "replay", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


async def make_recording(config: SessionManagerConfig) -> str:
    async with SessionManager(config) as manager, SessionReplay(manager) as replay:
        sid = await manager.create_session("planner", record=True)
        await manager.join_session(sid, "coder")
        for n in range(12):
            await manager.emit_event(sid, {"type": "modified", "data": {"n": n}}, "coder")
        await manager.emit_event(
            sid, {"type": "broke", "state_transition": {"from": "working", "to": "broken"}}, "planner"
        )
        return await replay.stop_recording(sid)


@pytest.fixture
def env_and_id(
    redis_server: EmbeddedRedis, make_config: Callable[..., SessionManagerConfig], namespace: str
) -> tuple[dict[str, str], str]:
    replay_id = asyncio.run(make_recording(make_config()))
    env = {
        **os.environ,
        "HUDDLE_REDIS_URL": redis_server.url,
        "HUDDLE_NAMESPACE": namespace,
        "COLUMNS": "200",
    }
    return env, replay_id


def test_list_and_show_describe_the_recording(env_and_id: tuple[dict[str, str], str]) -> None:
    env, replay_id = env_and_id
    listed = run("list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert replay_id in listed.stdout and "complete" in listed.stdout
    shown = run("show", replay_id, env=env)
    assert shown.returncode == 0 and "frames" in shown.stdout and replay_id in shown.stdout


def test_play_renders_the_filtered_timeline(env_and_id: tuple[dict[str, str], str]) -> None:
    env, replay_id = env_and_id
    result = run("play", replay_id, "--speed", "0", "--type", "broke", "--agent", "planner", env=env)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "#" in line]
    assert len(lines) == 1 and "broke" in lines[0] and "state=broken" in lines[0]
    assert "1 frames played" in result.stdout


def test_verify_passes_then_fails_after_tampering(
    env_and_id: tuple[dict[str, str], str], make_config: Callable[..., SessionManagerConfig]
) -> None:
    env, replay_id = env_and_id
    assert run("verify", replay_id, env=env).returncode == 0

    async def tamper() -> None:
        async with SessionManager(make_config()) as manager:
            await manager.client.delete(manager.keys.replay(replay_id, "segments"))

    asyncio.run(tamper())
    result = run("verify", replay_id, env=env)
    assert result.returncode == 1 and "FAILED" in result.stdout and "frame 0" in result.stdout


def test_export_then_import_elsewhere_and_play_the_file_with_an_embedded_redis(
    env_and_id: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, replay_id = env_and_id
    exported = tmp_path / "bug.jsonl"
    result = run("export", replay_id, "--output", str(exported), env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(exported.read_text().splitlines()[0])["replay_id"] == replay_id
    other = {**env, "HUDDLE_NAMESPACE": env["HUDDLE_NAMESPACE"] + "x"}
    imported = run("import", str(exported), env=other)
    assert imported.returncode == 0 and replay_id in imported.stdout
    assert run("import", str(exported), env=other).returncode == 1  # the id exists there now
    standalone = {k: v for k, v in env.items() if k not in ("HUDDLE_REDIS_URL", "HUDDLE_NAMESPACE")}
    played = run("play", str(exported), "--speed", "0", env=standalone)
    assert played.returncode == 0, played.stderr
    assert "frames played" in played.stdout and "embedded redis-server" in played.stderr


def test_unknown_replay_prints_one_error_line(env_and_id: tuple[dict[str, str], str]) -> None:
    env, _ = env_and_id
    result = run("show", "rp-nope", env=env)
    assert result.returncode == 1 and "replay_not_found" in result.stderr and "Traceback" not in result.stderr
