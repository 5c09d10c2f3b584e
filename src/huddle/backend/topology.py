"""Local multi-process Redis topologies on loopback: a Redis Cluster, a Sentinel setup, TLS servers and certs.

Everything runs the same ``redis-server`` binary that ``EmbeddedRedis`` finds; it exists for tests, benchmarks and
``huddle demo --cluster``. Setup talks to the servers with redis-py's synchronous client (admin commands only).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from ..errors import EmbeddedRedisError
from .embedded import EmbeddedRedis, find_redis_server, free_port

SLOTS = 16384
CLUSTER_BUS_OFFSET = 10000


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too (ports must stay <= 55535)."""
    for _ in range(200):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET > 65535:
            port -= 20000
        if _port_free(port) and _port_free(port + CLUSTER_BUS_OFFSET):
            return port
    raise EmbeddedRedisError("no free port pair for a cluster node")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise EmbeddedRedisError(f"timed out after {timeout}s waiting for {what}")


def _admin(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=5)


def pause_node(node: EmbeddedRedis) -> int:
    """SIGSTOP a running server (a stalled process: it answers nobody, its sockets stay open); returns the pid
    for ``resume_node``."""
    pid = int(_admin(node.port).info("server")["process_id"])
    os.kill(pid, signal.SIGSTOP)
    return pid


def resume_node(pid: int) -> None:
    """SIGCONT a server paused by ``pause_node`` (a no-op if it is gone)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def binary_version(binary: str) -> tuple[int, ...]:
    """``(major, minor, patch)`` of a redis-server binary."""
    version = EmbeddedRedis(binary=binary, port=1).version()
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def tls_supported(binary: str | None = None) -> bool:
    """True if the binary was built with TLS (it accepts ``tls-port``)."""
    binary = binary or find_redis_server()
    with tempfile.TemporaryDirectory() as folder:
        conf = Path(folder) / "probe.conf"
        conf.write_text("tls-port 0\nport 0\n")
        # With TLS built in, the server accepts the config and exits at once ("not listen anywhere").
        out = subprocess.run([binary, str(conf)], capture_output=True, text=True, check=False, timeout=10)
    return "Bad directive" not in (out.stdout + out.stderr)


# -- TLS material ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A private CA with a server certificate (localhost, 127.0.0.1) and a client certificate it signed."""

    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise EmbeddedRedisError("openssl is not installed; it is needed to generate TLS certificates")
    result = subprocess.run([openssl, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EmbeddedRedisError(f"openssl {args[0]} failed: {result.stderr.strip()[-300:]}")


def make_tls_files(folder: str | Path, days: int = 2) -> TlsFiles:
    """Generate a CA, a server cert for localhost/127.0.0.1 and a client cert (RSA 2048) in ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = out / "ca.key", out / "ca.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca_cert),
             "-days", str(days), "-subj", "/CN=huddle test CA")  # fmt: skip
    (out / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    (out / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        key, csr, cert = out / f"{name}.key", out / f"{name}.csr", out / f"{name}.crt"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                 "-subj", f"/CN={'localhost' if name == 'server' else 'huddle-client'}")  # fmt: skip
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
                 "-out", str(cert), "-days", str(days), "-extfile", str(out / f"{name}.ext"))  # fmt: skip
    return TlsFiles(
        ca_cert=str(ca_cert),
        server_cert=str(out / "server.crt"),
        server_key=str(out / "server.key"),
        client_cert=str(out / "client.crt"),
        client_key=str(out / "client.key"),
    )


class EmbeddedTlsRedis(EmbeddedRedis):
    """A redis-server that also listens with TLS on ``tls_port`` (the plain port stays for admin and readiness)."""

    def __init__(self, tls: TlsFiles, *, require_client_cert: bool = False, **kwargs: Any) -> None:
        self.tls = tls
        self.tls_port = free_port()
        extra = [
            "--tls-port", str(self.tls_port),
            "--tls-cert-file", tls.server_cert,
            "--tls-key-file", tls.server_key,
            "--tls-ca-cert-file", tls.ca_cert,
            "--tls-auth-clients", "yes" if require_client_cert else "no",
        ]  # fmt: skip
        super().__init__(extra_args=[*extra, *kwargs.pop("extra_args", [])], **kwargs)

    @property
    def tls_url(self) -> str:
        """``rediss://localhost:<tls_port>/0``."""
        return f"rediss://localhost:{self.tls_port}/0"


# -- Redis Cluster --------------------------------------------------------------------------------------------
class EmbeddedCluster:
    """A local Redis Cluster: ``masters`` masters with ``replicas`` replicas each, slots split evenly.

    Runs with ``cluster-require-full-coverage no`` so that slots of a failed master do not stop the others."""

    def __init__(
        self,
        *,
        masters: int = 3,
        replicas: int = 1,
        binary: str | None = None,
        node_timeout_ms: int = 2000,
        extra_args: list[str] | None = None,
    ) -> None:
        if masters < 1 or replicas < 0:
            raise EmbeddedRedisError("a cluster needs at least one master and a non-negative replica count")
        self.binary = binary or find_redis_server()
        self.masters_count = masters
        self.replicas_per_master = replicas
        self.node_timeout_ms = node_timeout_ms
        self.extra_args = list(extra_args or [])
        self.nodes: list[EmbeddedRedis] = []

    @property
    def ports(self) -> list[int]:
        """Ports of every node (masters first, as started)."""
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """A URL of one node with ``cluster=true`` (the client discovers the others)."""
        return f"redis://127.0.0.1:{self.nodes[0].port}/0?cluster=true"

    def _node_args(self) -> list[str]:
        return [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-require-full-coverage", "no",
            "--cluster-replica-validity-factor", "0",
            "--cluster-allow-replica-migration", "no",
            "--repl-diskless-sync-delay", "0",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 30.0) -> Self:
        """Start the nodes, assign slots, meet, attach replicas and wait until the cluster is ``ok``."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        total = self.masters_count * (1 + self.replicas_per_master)
        for _ in range(total):
            node = EmbeddedRedis(port=cluster_port(), binary=self.binary, extra_args=self._node_args())
            self.nodes.append(node.start())
        masters = self.nodes[: self.masters_count]
        ids = {node.port: str(_admin(node.port).execute_command("CLUSTER", "MYID")) for node in self.nodes}
        per = SLOTS // self.masters_count
        for index, node in enumerate(masters):
            first = index * per
            last = SLOTS - 1 if index == self.masters_count - 1 else first + per - 1
            admin = _admin(node.port)
            admin.execute_command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
            admin.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
        seed = _admin(self.nodes[0].port)
        for node in self.nodes[1:]:
            seed.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)

        def everyone_known() -> bool:
            return all(
                len(str(_admin(node.port).execute_command("CLUSTER", "NODES")).strip().splitlines()) == total
                for node in self.nodes
            )

        _wait_until(everyone_known, timeout, "cluster nodes to meet")
        replicas = self.nodes[self.masters_count :]
        for index, node in enumerate(replicas):
            master = masters[index % self.masters_count]
            _admin(node.port).execute_command("CLUSTER", "REPLICATE", ids[master.port])
        _wait_until(self._healthy, timeout, "the cluster to be ok with replicas in sync")

    def _healthy(self) -> bool:
        for node in self.nodes:
            admin = _admin(node.port)
            cluster_info = str(admin.execute_command("CLUSTER", "INFO"))
            # With ``cluster-require-full-coverage no`` a node says ``ok`` before gossip has told it who
            # serves every slot; a client that reads CLUSTER SLOTS from it then lacks slots.
            if (
                "cluster_state:ok" not in cluster_info
                or f"cluster_slots_assigned:{SLOTS}" not in cluster_info
            ):
                return False
            info = admin.info("replication")
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True

    def node_of_key(self, key: str) -> EmbeddedRedis:
        """The node that currently serves ``key``'s slot (asks a live node)."""
        slot = self.keyslot(key)
        return self.node_of_slot(slot)

    def keyslot(self, key: str) -> int:
        """The hash slot of ``key``."""
        return int(self._live_admin().execute_command("CLUSTER", "KEYSLOT", key))

    def node_of_slot(self, slot: int) -> EmbeddedRedis:
        """The master that serves ``slot`` right now."""
        for first, last, master, *_ in self._live_admin().execute_command("CLUSTER", "SLOTS"):
            if int(first) <= slot <= int(last):
                port = int(master[1])
                return next(node for node in self.nodes if node.port == port)
        raise EmbeddedRedisError(f"slot {slot} is not served by any node")

    def masters(self) -> list[EmbeddedRedis]:
        """Live nodes whose role is master right now."""
        found = []
        for node in self.nodes:
            if node.running and _admin(node.port).info("replication").get("role") == "master":
                found.append(node)
        return found

    def _live_admin(self) -> redis.Redis:
        for node in self.nodes:
            if node.running:
                return _admin(node.port)
        raise EmbeddedRedisError("no cluster node is running")

    def kill(self, node: EmbeddedRedis) -> None:
        """SIGKILL one node (like a crash); its data directory is kept."""
        node.stop(kill=True, cleanup=False)

    def wait_for_failover(self, dead: EmbeddedRedis, timeout: float = 30.0) -> EmbeddedRedis:
        """Wait until a replica took over every slot of the ``dead`` master; returns the new master."""
        slots = [
            int(first)
            for first, _last, master, *_ in self._live_admin().execute_command("CLUSTER", "SLOTS")
            if int(master[1]) == dead.port
        ]
        if not slots:
            raise EmbeddedRedisError(f"node :{dead.port} serves no slots (not a master, or already replaced)")

        def promoted() -> bool:
            if self.node_of_slot(slots[0]).port == dead.port:
                return False
            infos = [str(_admin(n.port).execute_command("CLUSTER", "INFO")) for n in self.nodes if n.running]
            return all("cluster_state:ok" in info for info in infos)

        _wait_until(promoted, timeout, f"a replica to replace master :{dead.port}")
        return self.node_of_slot(slots[0])

    def _admin_except(self, node: EmbeddedRedis) -> redis.Redis:
        """An admin client of a running node other than ``node`` (which may be paused)."""
        for other in self.nodes:
            if other.running and other.port != node.port:
                return _admin(other.port)
        raise EmbeddedRedisError("no other cluster node is running")

    def wait_for_takeover(self, old: EmbeddedRedis, slot: int, timeout: float = 30.0) -> EmbeddedRedis:
        """Wait until another node serves ``slot`` instead of ``old`` (dead or paused: it is never asked) and
        answers as a master; returns that node."""
        found: list[EmbeddedRedis] = []

        def promoted() -> bool:
            found.clear()
            for first, last, master, *_ in self._admin_except(old).execute_command("CLUSTER", "SLOTS"):
                if int(first) <= slot <= int(last) and int(master[1]) != old.port:
                    node = next(n for n in self.nodes if n.port == int(master[1]))
                    if _admin(node.port).info("replication").get("role") == "master":
                        found.append(node)
            return bool(found)

        _wait_until(promoted, timeout, f"a replica to take slot {slot} over from :{old.port}")
        return found[0]

    def wait_replica_of(self, node: EmbeddedRedis, master: EmbeddedRedis, timeout: float = 30.0) -> None:
        """Wait until ``node`` (restarted, or resumed after a pause) replicates ``master`` with its link up and
        every node says the cluster is ok; a former master left with no slots is told to replicate."""
        master_id = str(_admin(master.port).execute_command("CLUSTER", "MYID"))

        def in_sync() -> bool:
            admin = _admin(node.port)
            info = admin.info("replication")
            if info.get("role") == "master":
                myself = next(
                    line for line in str(admin.execute_command("CLUSTER", "NODES")).splitlines()
                    if "myself" in line
                )  # fmt: skip
                if len(myself.split()) <= 8:  # no slot ranges left: it lost them to the new master
                    admin.execute_command("CLUSTER", "REPLICATE", master_id)
                return False
            if info.get("master_link_status") != "up" or int(info.get("master_port", 0)) != master.port:
                return False
            return self._healthy()

        _wait_until(in_sync, timeout, f"node :{node.port} to replicate :{master.port}")

    def migrate_slot(self, slot: int, target: EmbeddedRedis, batch: int = 100) -> int:
        """Move ``slot`` to ``target`` like ``redis-cli --cluster reshard`` does; returns the keys moved."""
        source = self.node_of_slot(slot)
        if source.port == target.port:
            return 0
        src, dst = _admin(source.port), _admin(target.port)
        src_id = str(src.execute_command("CLUSTER", "MYID"))
        dst_id = str(dst.execute_command("CLUSTER", "MYID"))
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        moved = 0
        while True:
            keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
            if not keys:
                break
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
        for node in self.masters():
            _admin(node.port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        return moved

    def ids_on_every_master(
        self, key_of: Callable[[str], str], per_master: int, prefix: str = "s-"
    ) -> list[str]:
        """Random ids chosen so that every master serves exactly ``per_master`` of them (``key_of(id)`` is the
        key whose slot decides, e.g. a session's meta key)."""
        wanted = {node.port: per_master for node in self.masters()}
        chosen: list[str] = []
        while any(wanted.values()):
            candidate = f"{prefix}{uuid.uuid4().hex[:12]}"
            port = self.node_of_key(key_of(candidate)).port
            if wanted.get(port, 0) > 0:
                wanted[port] -= 1
                chosen.append(candidate)
        return chosen

    def distribution(self, keys: list[str]) -> dict[int, int]:
        """How many of ``keys`` each master (by port) serves."""
        counts = {node.port: 0 for node in self.masters()}
        for key in keys:
            port = self.node_of_key(key).port
            counts[port] = counts.get(port, 0) + 1
        return counts

    def stop(self) -> None:
        """Stop every node and remove their data."""
        nodes, self.nodes = self.nodes, []
        for node in nodes:
            node.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
