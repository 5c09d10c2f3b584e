"""``huddle serve`` in a real subprocess against real Redis, spoken to over HTTP with httpx."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis as redis_py
from prometheus_client.parser import text_string_to_metric_families

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.embedded import free_port

HEALTH_PATHS = ["/health", "/health/detailed", "/health/components", "/health/redis", "/health/sessions"]
TOKEN = "serve-test-token-1234"


class Served:
    """One ``huddle serve`` process; ``stop()`` sends SIGTERM and returns the exit code."""

    def __init__(self, redis_url: str | None, namespace: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.namespace = namespace
        self.stderr = ""
        self.base = f"http://127.0.0.1:{self.port}"
        environment = {
            k: v for k, v in os.environ.items() if k not in ("HUDDLE_REDIS_URL", "HUDDLE_HEALTH_AUTH_TOKEN")
        }
        environment.update({"HUDDLE_NAMESPACE": namespace, **(env or {})})
        if redis_url is not None:  # None: no HUDDLE_REDIS_URL, serve starts its own embedded server
            environment["HUDDLE_REDIS_URL"] = redis_url
        command = [sys.executable, "-m", "huddle", "serve", "--port", str(self.port), "--check-interval", "1"]
        self.process = subprocess.Popen(
            command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.client = httpx.Client(base_url=self.base, timeout=10)
        self.wait_for(lambda: self.client.get("/livez").status_code == 200, "the server to listen")

    def wait_for(self, condition: Callable[[], bool], what: str, limit: float = 30.0) -> None:
        """Poll ``condition`` (bounded; not a timing assertion) while checking the process is alive."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                _, err = self.process.communicate()
                raise AssertionError(f"huddle serve exited early: {err.decode(errors='replace')}")
            try:
                if condition():
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def stop(self) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=30)
        self.stderr = err.decode(errors="replace")
        return self.process.returncode


@pytest.fixture(scope="module")
def served(redis_server: EmbeddedRedis) -> Iterator[Served]:
    """One server for the read-only endpoint tests, on its own namespace of the shared test Redis."""
    server = Served(redis_server.url, f"serve{uuid.uuid4().hex[:8]}")
    yield server
    assert server.stop() == 0


def test_health_endpoints_answer_with_health_json(served: Served) -> None:
    for path in HEALTH_PATHS:
        response = served.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("application/health+json"), path
        assert response.json()["status"] == "pass", path


def test_basic_health_names_each_component_level(served: Served) -> None:
    body = served.get("/health").json()
    assert body["overall"] == "healthy" and body["ready"] is True
    assert body["components"]["redis"] == "healthy"
    assert body["components"]["replay"] == "healthy"  # serve hands its recorder to the health check


def test_detailed_health_lists_checks_with_observed_values(served: Served) -> None:
    body = served.get("/health/detailed").json()
    check = body["checks"]["redis:responseTime"][0]
    assert (
        check["observedUnit"] == "ms"
        and check["observedValue"] >= 0
        and check["componentType"] == "datastore"
    )
    assert set(body["components"]) >= {"redis", "pubsub", "sessions", "performance", "process"}
    assert body["metrics"]["process"]["rssBytes"] > 0


def test_redis_endpoint_reports_server_figures(served: Served) -> None:
    details = served.get("/health/redis").json()["component"]["details"]
    assert details["role"] == "master" and details["version"]
    assert details["used_memory_bytes"] > 0 and "maxmemory_policy" in details
    assert details["persistence"]["mode"] in ("none", "rdb", "aof", "aof+rdb", "unknown")


def test_sessions_endpoint_counts_sessions_written_by_agents(
    served: Served, redis_server: EmbeddedRedis
) -> None:
    async def write() -> None:
        config = SessionManagerConfig(redis_url=redis_server.url, namespace=served.namespace)
        async with SessionManager(config) as manager:
            for agent in ("a1", "a2"):
                await manager.create_session(agent)

    asyncio.run(write())

    def counted() -> bool:
        return bool(served.get("/health/sessions").json()["stats"]["active_sessions"] == 2)

    served.wait_for(counted, "the sessions endpoint to count 2 sessions")


def test_metrics_endpoint_is_parseable_prometheus_text(served: Served) -> None:
    response = served.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"huddle_health_overall", "huddle_health_component", "process_resident_memory_bytes"} <= names


def test_health_metrics_endpoint_reports_windows(served: Served) -> None:
    performance = served.get("/health/metrics").json()["performance"]
    assert set(performance["windows"]) == {"1m", "5m"}
    assert "throughput" in performance and "averageResponseTime" in " ".join(performance)


def test_livez_and_readyz_pass(served: Served) -> None:
    assert served.get("/livez").json()["status"] == "pass"
    ready = served.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "accepting": True,
        "redis": True,
        "scripts": True,
    }


def test_token_protects_everything_but_livez_and_readyz_and_sigterm_exits_zero(
    redis_server: EmbeddedRedis,
) -> None:
    server = Served(redis_server.url, f"serve{uuid.uuid4().hex[:8]}", env={"HUDDLE_HEALTH_AUTH_TOKEN": TOKEN})
    try:
        for path in [*HEALTH_PATHS, "/health/metrics", "/metrics"]:
            denied = server.get(path)
            assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Bearer"), path
            assert server.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
            assert server.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200, path
            assert TOKEN not in server.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).text
        assert server.get("/livez").status_code == 200
        assert server.get("/readyz").status_code == 200
    finally:
        code = server.stop()
    assert code == 0
    assert "huddle serve stopped" in server.stderr  # it closed its connections before exiting


def test_redis_outage_turns_health_down_and_back_without_restarting_the_server() -> None:
    with EmbeddedRedis() as redis:
        server = Served(redis.url, "outage")
        try:
            assert server.get("/health").status_code == 200
            redis.stop(cleanup=False)
            server.wait_for(lambda: server.get("/health").status_code == 503, "/health to turn 503")
            assert server.get("/health").json()["overall"] == "down"
            assert server.get("/livez").status_code == 200
            assert server.get("/readyz").status_code == 503
            redis.start()
            server.wait_for(lambda: server.get("/health").status_code == 200, "/health to recover")
            assert server.get("/health").json()["overall"] == "healthy"
            assert server.get("/readyz").status_code == 200
        finally:
            code = server.stop()
    assert code == 0
    assert "redis:connection is down" in server.stderr and "redis:connection recovered" in server.stderr


def test_no_secret_reaches_any_endpoint_or_the_log_with_a_password_protected_redis() -> None:
    password = "serve-Secret-pass-987"
    with EmbeddedRedis() as redis:
        admin = redis_py.Redis(port=redis.port)
        admin.config_set("requirepass", password)  # after start: the start-up probe sends no password
        admin.close()
        server = Served(f"redis://:{password}@127.0.0.1:{redis.port}/0", "secrets")
        try:
            paths = [*HEALTH_PATHS, "/health/metrics", "/metrics", "/livez", "/readyz"]
            for path in paths:
                response = server.get(path)
                assert response.status_code == 200, path
                assert password not in response.text, path
        finally:
            code = server.stop()
    assert code == 0 and password not in server.stderr


def test_without_a_redis_url_serve_runs_and_stops_an_embedded_server() -> None:
    server = Served(None, "embedded")
    try:
        body = server.get("/health").json()
        assert body["overall"] == "healthy" and body["components"]["redis"] == "healthy"
    finally:
        code = server.stop()
    assert code == 0
    port = int(re.search(r"redis://127\.0\.0\.1:(\d+)", server.stderr).group(1))  # type: ignore[union-attr]
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass  # the embedded server is gone with the service
