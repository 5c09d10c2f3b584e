"""One ``huddle serve`` subprocess on a free port, on its own namespace of the test Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import httpx

from huddle.backend.embedded import free_port


class ConsoleServer:
    """A running ``huddle serve``; ``stop()`` sends SIGTERM and returns the exit code."""

    def __init__(
        self, redis_url: str, namespace: str, env: dict[str, str] | None = None, port: int | None = None
    ) -> None:
        self.port = port if port is not None else free_port()
        self.namespace = namespace
        self.redis_url = redis_url
        self.base = f"http://127.0.0.1:{self.port}"
        environment = {
            k: v
            for k, v in os.environ.items()
            if k not in ("HUDDLE_HEALTH_AUTH_TOKEN", "HUDDLE_API_TOKENS", "HUDDLE_API_TOKENS_FILE")
        }
        environment.update({"HUDDLE_REDIS_URL": redis_url, "HUDDLE_NAMESPACE": namespace, **(env or {})})
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

    def url(self, path: str) -> str:
        """Absolute URL of a path on this server."""
        return self.base + path

    def stop(self) -> int:
        """SIGTERM, wait, return the exit code."""
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
        return self.process.returncode
