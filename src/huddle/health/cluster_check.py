"""The Redis component on a Redis Cluster: every node is asked directly, the cluster's own state is judged.

Each primary gets PING (timed), INFO, ``CLUSTER INFO``, ``CLUSTER NODES`` and ``CONFIG GET save``, sent on
that node's own connections (not through the cluster client's routing, so a dead node does not make the data
path re-read the topology). Replicas are judged from the cluster's view: the nodes ``CLUSTER NODES`` flags as
replicas, in sync when their primary's INFO lists them ``online``. Figures with a threshold keep the standalone names and
carry the worst node (round trip, memory utilization) or the sum (memory, clients, evictions), so the same
alert thresholds apply; each node's figures are in ``details["nodes"]`` (and Prometheus, labelled by node).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from ..backend.connection import RedisClient
from .checkset import UNREACHABLE, CheckSet, persistence, text_of
from .config import HealthConfig
from .report import ComponentHealth, Level

SLOTS = 16384


@dataclass
class NodeFigures:
    """What one node answered (or why it did not)."""

    name: str
    server_type: str
    reachable: bool = False
    error: str | None = None
    rtt_ms: float | None = None
    info: dict[str, Any] = field(default_factory=dict)
    cluster: dict[str, str] = field(default_factory=dict)
    save: str | None = None
    slots: int = 0
    nodes_text: str = ""

    def as_details(self) -> dict[str, Any]:
        """The node's entry in ``details["nodes"]``."""
        info = self.info
        used, maxmemory = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        entry: dict[str, Any] = {
            "node": self.name,
            "type": self.server_type,
            "reachable": self.reachable,
            "slots": self.slots if self.server_type == "primary" else None,
        }
        if not self.reachable:
            entry["error"] = self.error
            return entry
        entry.update(
            response_time_ms=self.rtt_ms,
            role=text_of(info.get("role", "unknown")),
            version=text_of(info.get("redis_version", "")),
            used_memory_bytes=used,
            maxmemory_bytes=maxmemory,
            memory_utilization=round(used / maxmemory, 4) if maxmemory else None,
            connected_clients=int(info.get("connected_clients", 0)),
            blocked_clients=int(info.get("blocked_clients", 0)),
            evicted_keys_total=int(info.get("evicted_keys", 0)),
        )
        if self.server_type == "primary":
            entry["cluster_state"] = self.cluster.get("cluster_state")
            entry["cluster_slots_ok"] = int(self.cluster.get("cluster_slots_ok", 0))
        return entry


@dataclass
class ReplicaView:
    """A replica as the primaries see it."""

    name: str
    primary: str | None = None
    flags: set[str] = field(default_factory=set)
    state: str | None = None
    lag: int | None = None

    @property
    def in_sync(self) -> bool:
        return self.state == "online" and not self.flags & {"fail", "fail?"}

    def as_details(self) -> dict[str, Any]:
        return {
            "node": self.name,
            "type": "replica",
            "reachable": self.in_sync,
            "slots": None,
            "primary": self.primary,
            "replication_state": self.state,
            "lag_seconds": self.lag,
            "flags": sorted(self.flags),
        }


def replica_views(up: list[NodeFigures]) -> list[ReplicaView]:
    """Replicas flagged in any primary's CLUSTER NODES or listed in its INFO replication section."""
    views: dict[str, ReplicaView] = {}
    ids = {}
    for figures in up:
        for line in figures.nodes_text.splitlines():
            parts = line.split()
            if len(parts) >= 4:
                ids[parts[0]] = parts[1].split("@")[0]
    for figures in up:
        for line in figures.nodes_text.splitlines():
            parts = line.split()
            if len(parts) < 4 or "slave" not in parts[2].split(","):
                continue
            view = views.setdefault(parts[1].split("@")[0], ReplicaView(parts[1].split("@")[0]))
            view.flags |= {flag for flag in parts[2].split(",") if flag in ("fail", "fail?")}
            view.primary = ids.get(parts[3], view.primary)
        for key, value in figures.info.items():
            if key.startswith("slave") and key[5:].isdigit() and isinstance(value, dict):
                name = f"{value.get('ip')}:{value.get('port')}"
                view = views.setdefault(name, ReplicaView(name))
                view.primary, view.state = figures.name, text_of(value.get("state"))
                view.lag = int(value["lag"]) if "lag" in value else None
    return sorted(views.values(), key=lambda view: view.name)


def _slot_counts(client: RedisClient) -> dict[str, int]:
    """How many slots each primary serves, from the client's slot map."""
    counts: dict[str, int] = {}
    for nodes in client.nodes_manager.slots_cache.values():
        if nodes:
            counts[nodes[0].name] = counts.get(nodes[0].name, 0) + 1
    return counts


class ClusterRedisCheck:
    """Reachability, round trip, role, memory, clients, persistence of every node, and CLUSTER INFO."""

    name = "redis"

    def __init__(self, client: RedisClient, config: HealthConfig) -> None:
        self.client = client
        self.config = config
        self._evicted: dict[str, int] = {}

    async def _ask(self, node: Any, figures: NodeFigures) -> None:
        figures.info = {text_of(k): v for k, v in dict(await node.execute_command("INFO")).items()}
        started = time.perf_counter()  # timed after INFO: a connection (re)opened for it is not counted
        await node.execute_command("PING")
        figures.rtt_ms = round((time.perf_counter() - started) * 1000, 3)
        if figures.server_type == "primary":
            reply = await node.execute_command("CLUSTER INFO")
            figures.cluster = {text_of(k): text_of(v) for k, v in dict(reply).items()}
            figures.nodes_text = _nodes_text(await node.execute_command("CLUSTER NODES"))
            try:
                saved = dict(await node.execute_command("CONFIG GET", "save"))
                figures.save = text_of(saved.get("save", "")) if saved else None
            except ResponseError:  # not permitted for this ACL user
                figures.save = None
        figures.reachable = True

    async def _node(self, node: Any, slots: int, limit: float) -> NodeFigures:
        figures = NodeFigures(
            name=str(node.name), server_type=str(node.server_type or "primary"), slots=slots
        )
        deadline = time.monotonic() + limit
        for attempt in range(2):  # a second try on a fresh connection: the data path may have just reset ours
            try:
                await asyncio.wait_for(self._ask(node, figures), max(0.05, deadline - time.monotonic()))
                return figures
            except TimeoutError:
                figures.reachable, figures.error = False, f"no answer within {limit:g}s"
                return figures
            except UNREACHABLE as exc:
                figures.reachable, figures.error = False, f"{type(exc).__name__}: {exc}"
                if attempt == 0:
                    await node.disconnect_free_connections()
        return figures

    async def run(self) -> ComponentHealth:
        checks = CheckSet(self.name, "datastore", self.config)
        try:
            await self.client.initialize()  # no-op when the slot map is current; re-reads it after a failure
            nodes = list(self.client.get_primaries())
            slots = _slot_counts(self.client)
        except UNREACHABLE as exc:
            checks.add("connection", False, level="down", output=f"no cluster node reachable: {exc}")
            return checks.component(details={"reachable": False, "mode": "cluster"})
        timeout = max(0.1, self.config.check_timeout * 0.8)
        measured = await asyncio.gather(*(self._node(n, slots.get(n.name, 0), timeout) for n in nodes))
        primaries = list(measured)
        up = [f for f in primaries if f.reachable]
        replicas = replica_views(up)
        self._connection(checks, primaries, up)
        if up:
            self._cluster_state(checks, up)
            self._figures(checks, up)
            self._replicas(checks, replicas)
        versions = [text_of(f.info.get("redis_version", "")) for f in up]
        details: dict[str, Any] = {
            "reachable": bool(up),
            "mode": "cluster",
            "version": min(versions, key=_version_key) if versions else None,
            "role": "master" if up and all(text_of(f.info.get("role")) == "master" for f in up) else "mixed",
            "primaries": len(primaries),
            "replicas": len(replicas),
            "cluster_state": _state(up),
            "nodes": [f.as_details() for f in measured] + [view.as_details() for view in replicas],
        }
        if up:
            details["used_memory_bytes"] = sum(int(f.info.get("used_memory", 0)) for f in up)
            details["connected_clients"] = sum(int(f.info.get("connected_clients", 0)) for f in up)
        return checks.component(details=details)

    @staticmethod
    def _connection(checks: CheckSet, primaries: list[NodeFigures], up: list[NodeFigures]) -> None:
        down = [f for f in primaries if not f.reachable]
        if not down:
            checks.add("connection", True, output=f"{len(up)} primaries reachable")
            return
        named = "; ".join(f"primary {f.name} ({f.slots} slots) unreachable: {f.error}" for f in down)
        level: Level = "down" if not up else "critical"
        checks.add("connection", False, level=level, output=named)
        checks.add("unreachablePrimaries", len(down), "nodes", level=level)

    @staticmethod
    def _cluster_state(checks: CheckSet, up: list[NodeFigures]) -> None:
        failing = [f.name for f in up if f.cluster.get("cluster_state") != "ok"]
        slots_ok = min(int(f.cluster.get("cluster_slots_ok", 0)) for f in up)
        pfail = max(int(f.cluster.get("cluster_slots_pfail", 0)) for f in up)
        if failing:
            named = f"cluster_state is not ok on {', '.join(failing)}"
            checks.add("clusterState", "fail", level="critical", output=named)
        else:
            checks.add("clusterState", "ok")
        level: Level = "healthy" if slots_ok >= SLOTS else "critical"
        output: str | None = (
            None if slots_ok >= SLOTS else f"only {slots_ok} of {SLOTS} slots are served by a healthy node"
        )
        if pfail and level == "healthy":
            level, output = "warning", f"{pfail} slots on a node suspected down (pfail)"
        checks.add("slotsOk", slots_ok, "slots", level=level, output=output)

    def _figures(self, checks: CheckSet, up: list[NodeFigures]) -> None:
        slowest = max(up, key=lambda f: f.rtt_ms or 0.0)
        checks.add("responseTime", slowest.rtt_ms, "ms", output=f"slowest primary {slowest.name}")
        not_master = [f for f in up if text_of(f.info.get("role", "unknown")) != "master"]
        if not_master:
            named = ", ".join(f"{f.name} is a {text_of(f.info.get('role'))}" for f in not_master)
            checks.add("role", "mixed", level="critical", output=f"{named}: the slot map is stale")
        else:
            checks.add("role", "master")
        used = sum(int(f.info.get("used_memory", 0)) for f in up)
        checks.add("usedMemory", used, "bytes", output=f"sum over {len(up)} primaries")
        ratios = [
            (int(f.info.get("used_memory", 0)) / int(f.info["maxmemory"]), f.name)
            for f in up
            if int(f.info.get("maxmemory", 0)) > 0
        ]
        if ratios:
            ratio, name = max(ratios)
            checks.add("memoryUtilization", round(ratio, 4), "ratio", output=f"fullest primary {name}")
        else:
            checks.add("memoryUtilization", None, "ratio", output="no maxmemory limit set")
        recent: int | None = 0
        for f in up:
            evicted, before = int(f.info.get("evicted_keys", 0)), self._evicted.get(f.name)
            if before is None:
                recent = None
            elif recent is not None:
                recent += evicted - before if evicted >= before else evicted
            self._evicted[f.name] = evicted
        total = sum(int(f.info.get("evicted_keys", 0)) for f in up)
        checks.add("evictedKeys", recent, "keys", output=f"{total} evicted since the nodes started")
        checks.add("connectedClients", sum(int(f.info.get("connected_clients", 0)) for f in up), "clients")
        checks.add("blockedClients", sum(int(f.info.get("blocked_clients", 0)) for f in up), "clients")
        self._persistence(checks, up)

    @staticmethod
    def _persistence(checks: CheckSet, up: list[NodeFigures]) -> None:
        """The least durable primary decides (a scratch CheckSet judges each node like a standalone server)."""
        order = {"unknown": 0, "none": 1, "aof": 2, "rdb": 2, "aof+rdb": 3}
        judged: list[tuple[int, bool, str, str, str | None]] = []
        for f in up:
            scratch = CheckSet("redis", "datastore", checks.config)
            persistence(f.info, f.save, scratch)
            check = scratch.checks["redis:persistence"]
            mode = str(check.observed_value)
            judged.append((order.get(mode, 0), check.level == "healthy", f.name, mode, check.output))
        _rank, ok, name, mode, output = min(judged)
        if not ok or mode == "none":
            output = f"{name}: {output}"
        checks.add("persistence", mode, level="healthy" if ok else "warning", output=output)

    @staticmethod
    def _replicas(checks: CheckSet, replicas: list[ReplicaView]) -> None:
        if not replicas:
            return
        bad = [
            f"{view.name} ({','.join(sorted(view.flags)) or view.state or 'not listed by its primary'})"
            for view in replicas
            if not view.in_sync
        ]
        level: Level = "warning" if bad else "healthy"
        healthy = len(replicas) - len(bad)
        output = f"replicas not in sync (failover coverage reduced): {'; '.join(bad)}" if bad else None
        checks.add("replicasInSync", healthy, "nodes", level=level, output=output)


def _state(up: list[NodeFigures]) -> str:
    if not up:
        return "unknown"
    return "ok" if all(f.cluster.get("cluster_state") == "ok" for f in up) else "fail"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def _nodes_text(reply: Any) -> str:
    """CLUSTER NODES as text (redis-py may parse it into a dict)."""
    if isinstance(reply, dict):
        lines = []
        for address, node in reply.items():
            flags = text_of(node.get("flags", ""))
            master = text_of(node.get("master_id", "-") or "-")
            lines.append(f"{text_of(node.get('node_id', ''))} {text_of(address)} {flags} {master}")
        return "\n".join(lines)
    return text_of(reply)
