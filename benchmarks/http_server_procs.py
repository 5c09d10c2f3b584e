"""Benchmark: does serving the HTTP API from several processes on one port (SO_REUSEPORT) append faster here?

Run: ``.venv/bin/python benchmarks/http_server_procs.py [--procs 1 2 3] [--repeats 3] [--rounds 5]``. Uses
``HUDDLE_REDIS_URL`` if set, else an embedded redis-server. For each count N, starts N server processes (this file
with ``--serve``: ``create_app`` under uvicorn + uvloop, each binding the same port with SO_REUSEPORT, as a
``--workers N`` option would), then appends with the keep-alive load of ``http_api.py`` (16 connections x 100
events per block); prints events/s per block. Counts alternate, ``--repeats`` times, so machine load hits them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
import uuid

import httpx
import uvicorn
import uvloop
from http_api import KeepAlive, config, http_block, redis_url

from huddle import SessionManager
from huddle.api import TokenStore, create_app
from huddle.backend.embedded import free_port


async def serve(port: int, url: str, namespace: str) -> None:
    """One server process on a shared port."""
    manager = await SessionManager(config(url, namespace)).connect()
    app = create_app(manager, tokens=TokenStore(), mcp=False, console=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    settings = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    async with app.router.lifespan_context(app):
        await uvicorn.Server(settings).serve(sockets=[sock])


def start(count: int, url: str, namespace: str) -> tuple[list[subprocess.Popen[bytes]], int]:
    port = free_port()
    command = [sys.executable, __file__, "--serve", str(port), url, namespace]
    processes = [subprocess.Popen(command) for _ in range(count)]
    deadline = time.monotonic() + 30
    listening = 0
    while listening < count:  # every process must listen: probe until as many distinct connections answer
        try:
            httpx.get(f"http://127.0.0.1:{port}/livez")
            listening += 1
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit("the servers did not start") from None
        time.sleep(0.3)
    time.sleep(1.0)  # a process may answer before the others bound: give them all time to listen
    return processes, port


async def load(port: int, rounds: int) -> list[float]:
    pool = [await KeepAlive.open(port) for _ in range(16)]
    await http_block(pool, 16, 20)
    rates = [await http_block(pool, 16, 100) for _ in range(rounds)]
    for connection in pool:
        connection.close()
    return rates


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        uvloop.run(serve(int(sys.argv[2]), sys.argv[3], sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    found: dict[int, list[float]] = {count: [] for count in args.procs}
    with redis_url() as url:
        namespace = f"procs{uuid.uuid4().hex[:6]}"
        for _ in range(args.repeats):
            for count in args.procs:
                processes, port = start(count, url, namespace)
                try:
                    rates = asyncio.run(load(port, args.rounds))
                finally:
                    for process in processes:
                        process.terminate()
                        process.wait()
                found[count] += rates
                print(count, "process(es):", [round(rate) for rate in rates], flush=True)
    print("command: .venv/bin/python " + " ".join(sys.argv))
    for count, rates in found.items():
        print(f"{count} process(es): median {statistics.median(rates):,.0f} events/s, min {min(rates):,.0f}")


if __name__ == "__main__":
    main()
