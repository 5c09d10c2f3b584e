"""A local Sentinel setup on loopback: 1 master, 2 replicas and 3 sentinels from the same redis-server binary."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from ..errors import EmbeddedRedisError
from .embedded import EmbeddedRedis, find_redis_server, free_port
from .topology import _admin, _wait_until


class SentinelProcess:
    """One ``redis-server --sentinel`` process with its own (writable) config file."""

    def __init__(self, binary: str, folder: Path, master_port: int, service: str, down_after_ms: int) -> None:
        self.binary = binary
        self.port = free_port()
        self.folder = folder
        self.conf = folder / f"sentinel-{self.port}.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {folder}\n"
            f"logfile {folder}/sentinel-{self.port}.log\n"
            f"sentinel monitor {service} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
            f"sentinel failover-timeout {service} {max(down_after_ms * 5, 5000)}\n"
            f"sentinel parallel-syncs {service} 2\n"
        )
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        """Start the sentinel and wait until it answers PING."""
        self._process = subprocess.Popen(
            [self.binary, str(self.conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

        def answers() -> bool:
            if self._process is not None and self._process.poll() is not None:
                raise EmbeddedRedisError(f"sentinel on :{self.port} exited at start")
            return bool(_admin(self.port).ping())

        _wait_until(answers, 10, f"sentinel :{self.port}")
        return self

    def stop(self) -> None:
        """Terminate the sentinel."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class EmbeddedSentinel:
    """1 master + ``replicas`` replicas watched by ``sentinels`` sentinels (quorum 2), ready for failover tests."""

    def __init__(
        self,
        *,
        service: str = "huddle",
        replicas: int = 2,
        sentinels: int = 3,
        binary: str | None = None,
        down_after_ms: int = 1000,
    ) -> None:
        self.binary = binary or find_redis_server()
        self.service = service
        self.replica_count = replicas
        self.sentinel_count = sentinels
        self.down_after_ms = down_after_ms
        self.servers: list[EmbeddedRedis] = []
        self.sentinels: list[SentinelProcess] = []
        self._folder: Path | None = None

    @property
    def url(self) -> str:
        """``redis+sentinel://`` URL naming every sentinel and the service."""
        hosts = ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    def start(self, timeout: float = 30.0) -> Self:
        """Start master, replicas and sentinels; wait until every sentinel sees all replicas and peers."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        fast_sync = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        master = EmbeddedRedis(binary=self.binary, extra_args=fast_sync).start()
        self.servers.append(master)
        for _ in range(self.replica_count):
            replica = EmbeddedRedis(
                binary=self.binary, extra_args=[*fast_sync, "--replicaof", "127.0.0.1", str(master.port)]
            )
            self.servers.append(replica.start())
        self._folder = master.data_dir
        for _ in range(self.sentinel_count):
            sentinel = SentinelProcess(
                self.binary, master.data_dir, master.port, self.service, self.down_after_ms
            )
            self.sentinels.append(sentinel.start())
        _wait_until(self._ready, timeout, "sentinels to discover replicas and each other")

    def _ready(self) -> bool:
        for replica in self.servers[1:]:
            if _admin(replica.port).info("replication").get("master_link_status") != "up":
                return False
        for sentinel in self.sentinels:
            admin = _admin(sentinel.port)
            replicas = admin.execute_command("SENTINEL", "REPLICAS", self.service)
            healthy = [r for r in replicas if "s_down" not in _flags(r)]
            peers = admin.execute_command("SENTINEL", "SENTINELS", self.service)
            if len(healthy) < self.replica_count or len(peers) < self.sentinel_count - 1:
                return False
        return True

    def master_port(self) -> int:
        """The master's port as the sentinels report it."""
        for sentinel in self.sentinels:
            try:
                _host, port = _admin(sentinel.port).execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
                )
                return int(port)
            except (redis.RedisError, OSError):
                continue
        raise EmbeddedRedisError("no sentinel answered")

    def master(self) -> EmbeddedRedis:
        """The server the sentinels currently name as master."""
        port = self.master_port()
        return next(server for server in self.servers if server.port == port)

    def kill_master(self) -> EmbeddedRedis:
        """SIGKILL the current master (like a crash); returns it."""
        master = self.master()
        master.stop(kill=True, cleanup=False)
        return master

    def wait_for_new_master(self, old: EmbeddedRedis, timeout: float = 30.0) -> EmbeddedRedis:
        """Wait until the sentinels promoted a replica in place of ``old`` and it accepts writes."""

        def promoted() -> bool:
            port = self.master_port()
            if port == old.port:
                return False
            return bool(_admin(port).info("replication").get("role") == "master")

        _wait_until(promoted, timeout, "the sentinels to promote a replica")
        return self.master()

    def wait_replicated(self, timeout: float = 30.0) -> EmbeddedRedis:
        """Wait until every running server other than the master replicates it with its link up, the master
        counts them online, and every sentinel sees them as healthy replicas; returns the master."""

        def replicated() -> bool:
            master = self.master()
            others = [server for server in self.servers if server.running and server.port != master.port]
            for server in others:
                info = _admin(server.port).info("replication")
                if info.get("role") != "slave" or int(info.get("master_port", 0)) != master.port:
                    return False
                if info.get("master_link_status") != "up":
                    return False
            online = [
                value for key, value in _admin(master.port).info("replication").items()
                if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
            ]  # fmt: skip
            if len(online) < len(others):
                return False
            for sentinel in self.sentinels:
                replicas = _admin(sentinel.port).execute_command("SENTINEL", "REPLICAS", self.service)
                healthy = [
                    r for r in replicas if "s_down" not in _flags(r) and "disconnected" not in _flags(r)
                ]
                if len(healthy) < len(others):
                    return False
            return True

        _wait_until(replicated, timeout, "every replica to follow the master and the sentinels to see them")
        return self.master()

    def stop(self) -> None:
        """Stop sentinels and servers and remove their data."""
        sentinels, self.sentinels = self.sentinels, []
        for sentinel in sentinels:
            sentinel.stop()
        servers, self.servers = self.servers, []
        for server in reversed(servers):
            server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _flags(entry: object) -> str:
    """The ``flags`` field of a SENTINEL REPLICAS entry (redis-py gives a dict or a flat list)."""
    if isinstance(entry, dict):
        return str(entry.get("flags", ""))
    items = list(entry) if isinstance(entry, list | tuple) else []
    pairs = dict(zip(items[::2], items[1::2], strict=False))
    return str(pairs.get("flags", ""))
