"""Benchmark: the HTTP API (issue 13) against the library in the same run.

Run: ``.venv/bin/python benchmarks/http_api.py`` (``--help`` for the counts). Uses ``HUDDLE_REDIS_URL`` if set, else an
embedded redis-server; starts ``huddle serve`` (no tokens, loopback) as a subprocess on it.

1. append throughput: ``--clients`` concurrent tasks append events, through ``POST /v1/sessions/{id}/events``
   over a pool of that many keep-alive connections (a minimal HTTP/1.1 client, so the client library's own cost
   does not count against the server), and through ``SessionManager.emit_event`` in this process, in alternating
   blocks (ABBA) on fresh sessions; ratio = HTTP events/s / library events/s per round pair (target >= 0.5),
   and the CPU µs per event of each side (library process; server process + load generator).
2. SSE fan-out: ``--readers`` streams on one session (raw sockets, spread over ``--reader-procs`` processes) while
   ``--rate`` events/s are appended through the library; latency = arrival at each reader - the writer's
   acknowledgement (CLOCK_MONOTONIC is shared by all processes), p50/p99 (target p99 < 50 ms), and nothing missed.
3. blocking client: sequential ``emit_event`` through ``huddle.blocking.SessionManager`` against ``await
   manager.emit_event`` (ABBA blocks); ratio = per-call time blocking / async (target <= 1.3), and the same
   for this process's CPU per call (steadier when other work shares the machine).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import functools
import json
import multiprocessing
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis.asyncio

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.embedded import free_port
from huddle.blocking import SessionManager as BlockingManager

T = TypeVar("T")


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    if os.environ.get("HUDDLE_REDIS_URL"):
        yield os.environ["HUDDLE_REDIS_URL"]
        return
    with EmbeddedRedis() as server:
        yield server.url


@contextlib.contextmanager
def served(url: str, namespace: str, max_streams: int, *extra: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUDDLE_API_")}
    env.update({"HUDDLE_REDIS_URL": url, "HUDDLE_NAMESPACE": namespace})
    command = [
        sys.executable,
        "-m",
        "huddle",
        "serve",
        "--port",
        str(port),
        "--max-streams",
        str(max_streams),
        *extra,
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/livez").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(
                f"huddle serve did not start: {process.stderr.read().decode() if process.stderr else ''}"
            )
        time.sleep(0.1)
    try:
        yield base, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)


def config(url: str, namespace: str) -> SessionManagerConfig:
    return SessionManagerConfig(redis_url=url, namespace=namespace, enable_auto_checkpoint=False)


EVENT = {
    "type": "modified",
    "changeInfo": {"elementType": "file", "entityIds": ["a.py"], "operation": "edit"},
}


# -- 1. append throughput ----------------------------------------------------------------------------------
async def library_block(manager: SessionManager, clients: int, per_client: int) -> float:
    sessions = [await manager.create_session(f"agent{n}") for n in range(clients)]

    async def one(n: int) -> None:
        for _ in range(per_client):
            await manager.emit_event(sessions[n], EVENT, f"agent{n}")

    started = time.perf_counter()
    await asyncio.gather(*(one(n) for n in range(clients)))
    return clients * per_client / (time.perf_counter() - started)


_LENGTH = re.compile(rb"(?i)content-length: (\d+)")


class KeepAlive(asyncio.Protocol):
    """A minimal HTTP/1.1 keep-alive connection (one request at a time) on a bare asyncio protocol: the client
    side costs little CPU, so on a shared machine the run measures the server rather than the client.
    ``repeat`` sends the next request from the callback that read the previous answer (no task switch), as a
    load generator such as wrk does."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.request = b""
        self.remaining = 0
        self.repeated: asyncio.Future[None] | None = None

    @classmethod
    async def open(cls, port: int) -> KeepAlive:
        _, protocol = await asyncio.get_running_loop().create_connection(cls, "127.0.0.1", port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        found = _LENGTH.search(self.buffer, 0, end + 2)
        if found is None:
            raise SystemExit(f"no content-length in {self.buffer[:end]!r}")
        total = end + 4 + int(found.group(1))
        if len(self.buffer) < total:
            return
        status, body = int(self.buffer[9:12]), self.buffer[end + 4 : total]
        self.buffer = self.buffer[total:]
        if self.remaining and self.repeated is not None:
            if status != 201:
                self.repeated.set_exception(SystemExit(f"append failed: {status} {body!r}"))
                self.remaining = 0
                return
            self.remaining -= 1
            if self.remaining:
                assert self.transport is not None
                self.transport.write(self.request)
            else:
                self.repeated.set_result(None)
        elif self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        for waiter in (self.waiter, self.repeated):
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("the server closed the connection"))

    @staticmethod
    def encode(path: str, body: bytes) -> bytes:
        return (
            b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (path.encode(), len(body), body)
        )

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(self.encode(path, body))
        return await self.waiter

    async def repeat(self, path: str, body: bytes, count: int) -> None:
        """POST ``body`` ``count`` times, one after the other; every answer must be 201."""
        assert self.transport is not None
        self.repeated = asyncio.get_running_loop().create_future()
        self.request, self.remaining = self.encode(path, body), count
        self.transport.write(self.request)
        await self.repeated

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def http_block(pool: list[KeepAlive], clients: int, per_client: int, batch: int = 1) -> float:
    """Events/s appended over HTTP: each client sends ``per_client`` events, one per request or, with ``batch``
    > 1, as JSON arrays of ``batch`` events (one atomic append each)."""
    sessions = []
    for n in range(clients):
        _, created = await pool[0].post("/v1/sessions", json.dumps({"agent_id": f"agent{n}"}).encode())
        sessions.append(json.loads(created)["session_id"])

    events = [{**EVENT, "actor": f"agent{n}"} for n in range(clients)]
    bodies = [json.dumps(event if batch == 1 else [event] * batch).encode() for event in events]
    requests = max(per_client // batch, 1)
    started = time.perf_counter()
    await asyncio.gather(
        *(pool[n].repeat(f"/v1/sessions/{sessions[n]}/events", bodies[n], requests) for n in range(clients))
    )
    return clients * requests * batch / (time.perf_counter() - started)


async def throughput(
    url: str, base: str, pid: int, namespace: str, args: argparse.Namespace
) -> dict[str, object]:
    port = int(base.rsplit(":", 1)[1])
    library: list[float] = []
    http: list[float] = []
    library_cpu: list[float] = []  # CPU µs per event of this process (the library side)
    server_cpu: list[float] = []  # CPU µs per event of the server process(es)
    client_cpu: list[float] = []  # CPU µs per event of this process as the HTTP load generator
    events = args.clients * args.per_client
    async with SessionManager(config(url, namespace)) as manager:
        pool = [await KeepAlive.open(port) for _ in range(args.clients)]
        await library_block(manager, args.clients, 20)  # warm-up both sides
        await http_block(pool, args.clients, 20)
        for turn in range(args.rounds):
            for side in ("library", "http") if turn % 2 == 0 else ("http", "library"):  # ABBA
                own, server = time.process_time(), cpu_seconds(pid)
                if side == "library":
                    library.append(await library_block(manager, args.clients, args.per_client))
                    library_cpu.append((time.process_time() - own) / events * 1e6)
                else:
                    http.append(await http_block(pool, args.clients, args.per_client, args.batch))
                    client_cpu.append((time.process_time() - own) / events * 1e6)
                    server_cpu.append((cpu_seconds(pid) - server) / events * 1e6)
        for connection in pool:
            connection.close()
    ratios = [h / lib for h, lib in zip(http, library, strict=True)]
    return {
        "clients": args.clients,
        "batch": args.batch,
        "loop": args.loop,
        "library_events_per_s": statistics.median(library),
        "http_events_per_s": statistics.median(http),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "library_cpu_us_per_event": statistics.median(library_cpu),
        "server_cpu_us_per_event": statistics.median(server_cpu),
        "http_client_cpu_us_per_event": statistics.median(client_cpu),
    }


# -- 2. SSE fan-out ----------------------------------------------------------------------------------------
class SseReader(asyncio.Protocol):
    """One SSE stream read on a bare asyncio protocol (no task wake-up per read): it records when each seq
    arrived and checks that seqs arrive in order, each once (it counts the ``id:`` lines of every read)."""

    def __init__(
        self, index: int, seen: array.array[float], request: bytes, done: asyncio.Future[None]
    ) -> None:
        self.index, self.seen, self.request, self.done = index, seen, request, done
        self.headers_read = asyncio.get_running_loop().create_future()
        self.head = b""
        self.tail = b""
        self.last = 1  # the stream starts after seq 1
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if not self.headers_read.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 200 " not in self.head.split(b"\r\n", 1)[0]:
                self.headers_read.set_exception(SystemExit(f"stream refused: {self.head!r}"))
                return
            self.headers_read.set_result(None)
            data = self.head[end + 4 :]
        if self.tail:
            data = self.tail + data
        cut = data.rfind(b"\n")
        self.tail = data[cut + 1 :]
        complete = data[: cut + 1]
        found = complete.rfind(b"\nid: ")
        if found >= 0:  # only the newest id of a read is parsed; the ids before it are counted
            newest = int(complete[found + 5 : complete.index(b"\n", found + 5)])
            counted = complete.count(b"\nid: ")
            if counted != newest - self.last:
                self.fail(f"stream {self.index}: {counted} events for seqs {self.last + 1}..{newest}")
                return
            self.seen[self.last + 1 : newest + 1] = array.array("d", [now]) * counted
            self.last = newest
        if b"event: completed" in complete and not self.done.done():
            self.done.set_result(None)
            assert self.transport is not None
            self.transport.close()

    def fail(self, message: str) -> None:
        if not self.done.done():
            self.done.set_exception(SystemExit(message))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.headers_read.done():
            self.headers_read.set_exception(SystemExit(f"stream {self.index} closed before its headers"))
        self.fail(f"stream {self.index} closed before the completed event")


async def read_streams(port: int, session: str, readers: int, last_seq: int, out: str, ready: str) -> None:
    loop = asyncio.get_running_loop()
    arrivals = [array.array("d", [0.0]) * (last_seq + 1) for _ in range(readers)]
    request = (
        f"GET /v1/sessions/{session}/events/stream?from_seq=2 HTTP/1.1\r\nHost: bench\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    streams: list[SseReader] = []
    for index in range(readers):
        done: asyncio.Future[None] = loop.create_future()
        make = functools.partial(SseReader, index, arrivals[index], request, done)
        _, stream = await loop.create_connection(make, "127.0.0.1", port)
        streams.append(stream)
    await asyncio.gather(*(stream.headers_read for stream in streams))
    await asyncio.to_thread(Path(ready).write_text, "ready")
    await asyncio.wait_for(asyncio.gather(*(stream.done for stream in streams)), timeout=600)
    await asyncio.to_thread(write_rows, out, arrivals)


def write_rows(out: str, rows: list[array.array[float]]) -> None:
    with open(out, "wb") as handle:
        for row in rows:
            row.tofile(handle)


def read_rows(path: Path, count: int) -> array.array[float]:
    data = array.array("d")
    with open(path, "rb") as handle:
        data.fromfile(handle, count)
    return data


def reader_process(port: int, session: str, readers: int, last_seq: int, out: str, ready: str) -> None:
    try:
        import uvloop

        uvloop.run(read_streams(port, session, readers, last_seq, out, ready))
    except ImportError:
        asyncio.run(read_streams(port, session, readers, last_seq, out, ready))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def redis_cpu(url: str) -> float:
    """CPU seconds redis-server has used (``INFO cpu``)."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        info = await client.info("cpu")
    finally:
        await client.aclose()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def fanout(
    url: str, base: str, pid: int, namespace: str, args: argparse.Namespace
) -> dict[str, object]:
    port = int(base.rsplit(":", 1)[1])
    events = int(args.rate * args.seconds)
    async with SessionManager(config(url, namespace)) as manager:
        session = await manager.create_session("writer")  # seq 1; events go from seq 2
        last_seq = 2 * events + 10  # room for what huddle writes itself (e.g. a checkpoint when trimming)
        tmp = Path(tempfile.mkdtemp(prefix="huddle-bench-"))
        procs = []
        per_proc = [args.readers // args.reader_procs + (1 if n < args.readers % args.reader_procs else 0)
                    for n in range(args.reader_procs)]  # fmt: skip
        for n, count in enumerate(per_proc):
            proc = multiprocessing.Process(
                target=reader_process,
                args=(port, session, count, last_seq, str(tmp / f"r{n}.bin"), str(tmp / f"ready{n}")),
            )
            proc.start()
            procs.append(proc)
        deadline = time.monotonic() + 120
        while not all((tmp / f"ready{n}").exists() for n in range(len(procs))):
            if time.monotonic() > deadline:
                raise SystemExit("the readers did not connect")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        acks = array.array("d", [0.0]) * (last_seq + 1)
        interval = 1.0 / args.rate
        cpu_before = cpu_seconds(pid)
        readers_before = sum(cpu_seconds(proc.pid) for proc in procs if proc.pid is not None)
        writer_before = time.process_time()
        redis_before = await redis_cpu(url)
        started = time.monotonic()
        for n in range(events):
            due = started + n * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            seq = await manager.emit_event(session, {"type": "tick", "data": {"n": n}}, "writer")
            acks[seq] = time.monotonic()
        elapsed = time.monotonic() - started
        achieved = events / elapsed
        server_cpu = (cpu_seconds(pid) - cpu_before) / elapsed
        readers_cpu = (
            sum(cpu_seconds(proc.pid) for proc in procs if proc.pid is not None) - readers_before
        ) / elapsed
        writer_cpu = (time.process_time() - writer_before) / elapsed
        redis_cores = (await redis_cpu(url) - redis_before) / elapsed
        await manager.complete_session(session, "writer")  # the readers stop at the ``completed`` frame
    for proc in procs:
        proc.join(600)
    latencies: list[float] = []
    missed = 0
    for n, count in enumerate(per_proc):
        data = read_rows(tmp / f"r{n}.bin", count * (last_seq + 1))
        for r in range(count):
            row = data[r * (last_seq + 1) : (r + 1) * (last_seq + 1)]
            for seq in range(2, last_seq + 1):
                if not acks[seq]:
                    continue  # not a tick the writer appended
                if row[seq] == 0.0:
                    missed += 1
                else:
                    latencies.append((row[seq] - acks[seq]) * 1000)
    return {
        "readers": args.readers,
        "events": events,
        "target_rate": args.rate,
        "achieved_rate": achieved,
        "deliveries": len(latencies),
        "missed": missed,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
        "before_ack": sum(1 for value in latencies if value < 0),
        "server_cpu_cores": server_cpu,
        "reader_procs_cpu_cores": readers_cpu,
        "writer_cpu_cores": writer_cpu,
        "redis_cpu_cores": redis_cores,
        "reader_procs": args.reader_procs,
    }


# -- 3. blocking client --------------------------------------------------------------------------------------
def blocking_cost(url: str, namespace: str, args: argparse.Namespace) -> dict[str, object]:
    """Per-call wall time and CPU (this process) of sequential ``emit_event``: blocking client vs ``await``."""
    blocking = BlockingManager(config(url, namespace))
    loop = asyncio.new_event_loop()
    manager = SessionManager(config(url, namespace))

    async def async_block(count: int) -> tuple[float, float]:
        session = await manager.create_session("a")
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            await manager.emit_event(session, EVENT, "a")
        return (time.perf_counter() - started) / count, (time.process_time() - cpu) / count

    def blocking_block(count: int) -> tuple[float, float]:
        session = blocking.create_session("b")
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(count):
            blocking.emit_event(session, EVENT, "b")
        return (time.perf_counter() - started) / count, (time.process_time() - cpu) / count

    loop.run_until_complete(async_block(50))
    blocking_block(50)
    asyncs: list[tuple[float, float]] = []
    blocks: list[tuple[float, float]] = []
    for turn in range(args.rounds):  # ABBA
        if turn % 2 == 0:
            asyncs.append(loop.run_until_complete(async_block(args.sequential)))
            blocks.append(blocking_block(args.sequential))
        else:
            blocks.append(blocking_block(args.sequential))
            asyncs.append(loop.run_until_complete(async_block(args.sequential)))
    loop.run_until_complete(manager.close())
    loop.close()
    blocking.close()
    ratios = [b[0] / a[0] for a, b in zip(asyncs, blocks, strict=True)]
    cpu_ratios = [b[1] / a[1] for a, b in zip(asyncs, blocks, strict=True)]
    return {
        "async_us_per_call": statistics.median(a[0] for a in asyncs) * 1e6,
        "blocking_us_per_call": statistics.median(b[0] for b in blocks) * 1e6,
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "async_cpu_us_per_call": statistics.median(a[1] for a in asyncs) * 1e6,
        "blocking_cpu_us_per_call": statistics.median(b[1] for b in blocks) * 1e6,
        "cpu_ratio": statistics.median(cpu_ratios),
    }


def run(work: Coroutine[Any, Any, T], loop: str) -> T:
    """Run ``work`` on a fresh loop of the chosen kind."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(work)
    return asyncio.run(work)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--clients", type=int, default=16, help="concurrent appenders (and keep-alive connections)"
    )
    parser.add_argument("--per-client", type=int, default=200, help="events per appender per block")
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="HTTP side: events per request (a JSON array appended atomically)",
    )
    parser.add_argument("--readers", type=int, default=500)
    parser.add_argument("--reader-procs", type=int, default=2)
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s appended during the fan-out")
    parser.add_argument(
        "--coalesce-max-ms",
        type=float,
        default=None,
        help="huddle serve --sse-coalesce-max-ms (default: its own)",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the fan-out run")
    parser.add_argument(
        "--sequential", type=int, default=1000, help="calls per block for the blocking client"
    )
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="asyncio",
        help="event loop of this process (both sides of a comparison use it; huddle serve uses uvloop)",
    )
    parser.add_argument("--only", choices=["throughput", "fanout", "blocking"], default=None)
    args = parser.parse_args()
    results: dict[str, object] = {"command": " ".join([".venv/bin/python", *sys.argv])}
    with redis_url() as url:
        namespace = f"bench{uuid.uuid4().hex[:6]}"
        extra = [] if args.coalesce_max_ms is None else ["--sse-coalesce-max-ms", str(args.coalesce_max_ms)]
        with served(url, namespace, args.readers + 10, *extra) as (base, pid):
            if args.only in (None, "throughput"):
                results["append"] = run(throughput(url, base, pid, namespace, args), args.loop)
                print(json.dumps({"append": results["append"]}), flush=True)
            if args.only in (None, "fanout"):
                results["fanout"] = run(fanout(url, base, pid, namespace, args), args.loop)
                print(json.dumps({"fanout": results["fanout"]}), flush=True)
        if args.only in (None, "blocking"):
            results["blocking"] = blocking_cost(url, namespace, args)
            print(json.dumps({"blocking": results["blocking"]}), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
