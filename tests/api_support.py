"""A real ``huddle serve`` subprocess for the HTTP API tests, with one token per role."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from huddle.backend.embedded import free_port

TOKENS = {
    "alice": "tok-alice-0123456789",
    "bob": "tok-bob-0123456789",
    "carol": "tok-carol-0123456789",
    "observer": "tok-observer-0123456789",
    "admin": "tok-admin-0123456789",
}
TOKENS_ENV = " ".join(
    [f"agent:{name}={TOKENS[name]}" for name in ("alice", "bob", "carol")]
    + [f"observer:watch={TOKENS['observer']}", f"admin:root={TOKENS['admin']}"]
)


def auth(who: str) -> dict[str, str]:
    """The Authorization header of ``who``'s token."""
    return {"Authorization": f"Bearer {TOKENS[who]}"}


class ApiServer:
    """``python -m huddle serve`` on a free port; ``stop()`` sends SIGTERM and returns the exit code."""

    def __init__(
        self,
        redis_url: str,
        *args: str,
        tokens: bool = True,
        env: dict[str, str] | None = None,
        namespace: str | None = None,
    ) -> None:
        self.port = free_port()
        self.namespace = namespace or f"api{uuid.uuid4().hex[:8]}"
        self.base = f"http://127.0.0.1:{self.port}"
        environment = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("HUDDLE_API_") and k not in ("HUDDLE_HEALTH_AUTH_TOKEN",)
        }
        environment.update({"HUDDLE_NAMESPACE": self.namespace, "HUDDLE_REDIS_URL": redis_url})
        if tokens:
            environment["HUDDLE_API_TOKENS"] = TOKENS_ENV
        environment.update(env or {})
        command = [sys.executable, "-m", "huddle", "serve", "--port", str(self.port), *args]
        self.process = subprocess.Popen(
            command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.stderr = ""
        self.client = httpx.Client(base_url=self.base, timeout=15)
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
                pass
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def as_(self, who: str) -> httpx.Client:
        """A client sending ``who``'s token."""
        return httpx.Client(base_url=self.base, timeout=15, headers=auth(who))

    def request(self, who: str | None, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**(auth(who) if who else {}), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        _, err = self.process.communicate(timeout=40)
        self.stderr = err.decode(errors="replace")
        return self.process.returncode
