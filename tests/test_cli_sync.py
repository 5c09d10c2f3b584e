"""``huddle sync run|once|status`` for real: subprocesses between two real redis-servers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
from migration_support import target_server

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig

__all__ = ["target_server"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "huddle", "sync", *args],
        capture_output=True, text=True, timeout=120, env=env or clean_env(), check=False,
    )  # fmt: skip


def clean_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HUDDLE_")}
    return {**env, "COLUMNS": "250"}


async def _session(url: str, namespace: str, events: int) -> str:
    async with SessionManager(SessionManagerConfig(redis_url=url, namespace=namespace)) as manager:
        sid = await manager.create_session("alice")
        for i in range(events):
            await manager.emit_event(sid, {"type": "modified", "data": {"i": i}}, "alice")
        return sid


async def _emit(url: str, namespace: str, sid: str, events: int) -> int:
    async with SessionManager(SessionManagerConfig(redis_url=url, namespace=namespace)) as manager:
        for i in range(events):
            await manager.emit_event(sid, {"type": "modified", "data": {"i": i}}, "alice")
        return (await manager.get_session(sid)).last_seq


async def _last_seq(url: str, namespace: str, sid: str) -> int | None:
    async with SessionManager(SessionManagerConfig(redis_url=url, namespace=namespace)) as manager:
        doc = await manager.store.get_session(sid)
        return None if doc is None else doc.last_seq


def wait_for(check: object, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def test_sync_once_applies_what_the_target_lacks_and_prints_the_count(
    redis_server: EmbeddedRedis, target_server: EmbeddedRedis, namespace: str
) -> None:
    sid = asyncio.run(_session(redis_server.url, namespace, 4))
    urls = ("--from", redis_server.url, "--to", target_server.url, "--namespace", namespace)
    first = cli("once", *urls, sid)
    assert first.returncode == 0, first.stderr
    assert f"{sid}: 5 events applied" in first.stdout
    last = asyncio.run(_emit(redis_server.url, namespace, sid, 3))
    again = cli("once", *urls, sid)
    assert again.returncode == 0 and f"{sid}: 3 events applied" in again.stdout
    assert asyncio.run(_last_seq(target_server.url, namespace, sid)) == last


@pytest.mark.parametrize(("sig", "mode"), [(signal.SIGTERM, "real-time"), (signal.SIGINT, "periodic")])
def test_sync_run_mirrors_live_events_is_listed_by_status_and_stops_cleanly_on_a_signal(
    redis_server: EmbeddedRedis, target_server: EmbeddedRedis, namespace: str, sig: signal.Signals, mode: str
) -> None:
    sid = asyncio.run(_session(redis_server.url, namespace, 2))
    proc = subprocess.Popen(
        [sys.executable, "-m", "huddle", "sync", "run", "--from", redis_server.url, "--to", target_server.url,
         "--namespace", namespace, "--mode", mode, "--interval", "0.1", sid],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        assert f"syncing 1 session(s) ({mode})" in proc.stderr.readline()
        last = asyncio.run(_emit(redis_server.url, namespace, sid, 10))
        wait_for(lambda: asyncio.run(_last_seq(target_server.url, namespace, sid)) == last)
        status = cli("status", "--from", redis_server.url, "--namespace", namespace)
        assert status.returncode == 0, status.stderr
        assert sid in status.stdout and mode in status.stdout and f":{proc.pid}:" in status.stdout
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert sid in out and "stopped" in err
    after = cli("status", "--from", redis_server.url, "--namespace", namespace)
    assert after.returncode == 0 and "no sync links" in after.stdout


def test_sync_run_of_an_unknown_session_fails_with_one_line(
    redis_server: EmbeddedRedis, target_server: EmbeddedRedis, namespace: str
) -> None:
    result = cli(
        "run", "--from", redis_server.url, "--to", target_server.url, "--namespace", namespace, "nope"
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "sync_source_gone" in result.stderr


def test_sync_run_refuses_manual_mode(redis_server: EmbeddedRedis, target_server: EmbeddedRedis) -> None:
    result = cli("run", "--from", redis_server.url, "--to", target_server.url, "--mode", "manual", "s1")
    assert result.returncode == 1 and "invalid_migration_request" in result.stderr


def test_sync_status_needs_a_source(redis_server: EmbeddedRedis) -> None:
    result = cli("status")
    assert result.returncode == 1 and "--from" in result.stderr
    from_env = cli("status", env={**clean_env(), "HUDDLE_REDIS_URL": redis_server.url})
    assert from_env.returncode == 0, from_env.stderr
