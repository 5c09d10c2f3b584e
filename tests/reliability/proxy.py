"""FaultProxy: a TCP proxy in front of Redis that cuts, delays and blackholes traffic on demand.

It runs its own asyncio loop in a thread, so writers in other processes and the test's own loop can all talk
through it while the test injects faults from any thread."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

FAULT_KINDS = ("cut_request", "cut_reply", "delay", "blackhole", "reset")
"""cut_request: forward part of a client's next request, then drop both sides (the server sees half a command).
cut_reply: forward part of the server's next reply, then drop both sides (the command ran; the ack is lost).
delay: hold every chunk for a while during a window. blackhole: forward nothing during a window (TCP-like: what
was sent arrives after the window, if the peers still wait). reset: drop every open connection at once."""


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    closed: bool = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.upstream):
            with contextlib.suppress(Exception):
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    # SO_LINGER 0: an abortive close (RST), like a crashed peer or a middlebox dropping state.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            with contextlib.suppress(Exception):
                writer.close()


@dataclass
class ProxyStats:
    """Faults actually applied (not just armed), and connections accepted."""

    applied: Counter[str] = field(default_factory=Counter)
    connections: int = 0


class FaultProxy:
    """Listens on 127.0.0.1:<port> and forwards to ``upstream_port``; ``inject()`` arms one fault."""

    def __init__(self, upstream_port: int, *, seed: int = 0) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._armed: Counter[str] = Counter()
        self._delay_until = 0.0
        self._delay_s = 0.0
        self._blackhole_until = 0.0
        self._links: set[_Link] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<proxy port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    # -- life cycle -------------------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        """Start the proxy thread and wait until it listens."""
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        """Close every link and the listener; join the thread."""
        loop = self._loop
        if loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _shutdown(self) -> None:
        self._blackhole_until = self._delay_until = 0.0
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- faults -----------------------------------------------------------------------------------------------
    def inject(self, kind: str, seconds: float = 0.0) -> None:
        """Arm one fault (thread-safe). ``seconds``: length of a delay or blackhole window."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}")
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._arm, kind, seconds)

    def heal(self) -> None:
        """Disarm everything and end any delay or blackhole window (thread-safe)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._heal)

    def _heal(self) -> None:
        self._armed.clear()
        self._blackhole_until = self._delay_until = 0.0

    def _arm(self, kind: str, seconds: float) -> None:
        now = time.monotonic()
        if kind == "delay":
            self._delay_until = now + seconds
            self._delay_s = self._rng.uniform(0.005, 0.05)
            self.stats.applied[kind] += 1
        elif kind == "blackhole":
            self._blackhole_until = now + seconds
            self.stats.applied[kind] += 1
        elif kind == "reset":
            links = [link for link in self._links if not link.closed]
            for link in links:
                link.close()
            if links:
                self.stats.applied[kind] += 1
        else:
            self._armed[kind] += 1

    def _take(self, kind: str) -> bool:
        if self._armed[kind] > 0:
            self._armed[kind] -= 1
            self.stats.applied[kind] += 1
            return True
        return False

    # -- forwarding -------------------------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()  # upstream down (a killed Redis): the client sees a refused/closed connection
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, link, "cut_request"),
                self._pump(up_reader, writer, link, "cut_reply"),
            )
        finally:
            link.close()
            self._links.discard(link)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link, cut: str
    ) -> None:
        try:
            while not link.closed:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                # A window ends at a time, not on an event: polling is the simple honest way.
                while time.monotonic() < self._blackhole_until and not link.closed:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                if time.monotonic() < self._delay_until:
                    await asyncio.sleep(self._delay_s)
                if link.closed:
                    break
                if self._take(cut):
                    writer.write(chunk[: self._rng.randrange(len(chunk))])
                    with contextlib.suppress(Exception):
                        await writer.drain()
                    break
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            link.close()
