"""The CLI entry points run for real (subprocesses, embedded Redis)."""

from __future__ import annotations

import os
import subprocess
import sys

from huddle import EmbeddedRedis


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "huddle", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_version_works_through_python_dash_m() -> None:
    result = _run("--version")
    assert result.returncode == 0 and result.stdout.startswith("huddle ")


def test_demo_runs_three_agents_and_prints_a_gapless_timeline(redis_server: EmbeddedRedis) -> None:
    env = {
        **os.environ,
        "HUDDLE_REDIS_URL": redis_server.url,
        "HUDDLE_NAMESPACE": "demo-test",
        "COLUMNS": "200",
    }
    result = _run("demo", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for word in ("frontend-agent", "backend-agent", "testing-agent", "broke", "fixed", "checkpoint"):
        assert word in out
    assert "gapless, in order" in out


def test_demo_starts_its_own_redis_without_a_url() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUDDLE_REDIS_URL")}
    env["COLUMNS"] = "200"
    result = _run("demo", env=env)
    assert result.returncode == 0, result.stderr
    assert "embedded redis-server" in result.stderr


def test_errors_print_one_line_without_traceback() -> None:
    env = {
        **os.environ,
        "HUDDLE_REDIS_URL": "redis://127.0.0.1:1/0",
        "HUDDLE_RETRY_ATTEMPTS": "0",
        "HUDDLE_CONNECT_TIMEOUT": "1",
    }
    result = _run("demo", env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "redis_unavailable" in result.stderr
