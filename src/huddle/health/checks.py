"""Component checks: each reads its figures from the running system and judges them against thresholds."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from redis.exceptions import ResponseError

from ..backend.connection import RedisClient, is_cluster, ready, server_version
from ..core.store import SessionStore
from .adapters import MissingHealthApi, snapshot_for
from .checkset import UNREACHABLE, CheckSet, ComponentCheck, camel, persistence, text_of
from .cluster_check import ClusterRedisCheck
from .cluster_pubsub import ShardedPubSubCheck
from .config import HealthConfig
from .report import ComponentHealth


class RedisCheck:
    """Round trip, version, role, memory vs maxmemory, evictions, clients and persistence of the server.

    On a Redis Cluster every node is checked (``ClusterRedisCheck``)."""

    name = "redis"

    def __init__(self, client: RedisClient, config: HealthConfig) -> None:
        self.client = client
        self.config = config
        self._evicted: int | None = None
        self._save_config: str | None = None
        self._cluster: ComponentCheck | None = None

    async def _save_setting(self) -> str | None:
        """``CONFIG GET save`` (None where the ACL does not permit it)."""
        try:
            reply = await self.client.config_get("save")
        except ResponseError:
            return None
        values = {text_of(k): text_of(v) for k, v in dict(reply).items()}
        return values.get("save")

    async def run(self) -> ComponentHealth:
        checks = CheckSet(self.name, "datastore", self.config)
        try:
            client = await ready(self.client)  # an auto-detecting client asks the server first (awaited)
            if is_cluster(client):
                if self._cluster is None:
                    self._cluster = ClusterRedisCheck(client, self.config)
                return await self._cluster.run()
            started = time.perf_counter()
            await self.client.ping()
            rtt_ms = (time.perf_counter() - started) * 1000
            info = {text_of(k): v for k, v in (await self.client.info()).items()}
            save = await self._save_setting()
        except UNREACHABLE as exc:
            checks.add("connection", False, level="down", output=f"unreachable: {exc}")
            return checks.component(details={"reachable": False})
        checks.add("connection", True)
        checks.add("responseTime", round(rtt_ms, 3), "ms")
        role = text_of(info.get("role", "unknown"))
        if role == "master":
            checks.add("role", role)
        else:
            link = text_of(info.get("master_link_status", "unknown"))
            checks.add(
                "role", role, level="critical", output=f"connected to a {role} (link {link}): writes fail"
            )
        used, maxmemory = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        checks.add("usedMemory", used, "bytes")
        if maxmemory > 0:
            checks.add("memoryUtilization", round(used / maxmemory, 4), "ratio")
        else:
            checks.add("memoryUtilization", None, "ratio", output="no maxmemory limit set")
        evicted = int(info.get("evicted_keys", 0))
        # Evictions since the previous check (None on the first; a restarted server counts from 0 again).
        recent = (
            None
            if self._evicted is None
            else evicted - self._evicted
            if evicted >= self._evicted
            else evicted
        )
        self._evicted = evicted
        checks.add("evictedKeys", recent, "keys", output=f"{evicted} evicted since the server started")
        checks.add("connectedClients", int(info.get("connected_clients", 0)), "clients")
        checks.add("blockedClients", int(info.get("blocked_clients", 0)), "clients")
        persisted = persistence(info, save, checks)
        details = {
            "reachable": True,
            "version": text_of(info.get("redis_version", "")),
            "mode": text_of(info.get("redis_mode", "")),
            "role": role,
            "uptime_seconds": int(info.get("uptime_in_seconds", 0)),
            "used_memory_bytes": used,
            "maxmemory_bytes": maxmemory,
            "maxmemory_policy": text_of(info.get("maxmemory_policy", "")),
            "evicted_keys_total": evicted,
            "connected_clients": int(info.get("connected_clients", 0)),
            "blocked_clients": int(info.get("blocked_clients", 0)),
            "instantaneous_ops_per_sec": int(info.get("instantaneous_ops_per_sec", 0)),
            "persistence": persisted,
        }
        return checks.component(details=details)


class PubSubCheck:
    """Publish a probe on the health channel and time until the subscription delivers it."""

    name = "pubsub"

    def __init__(self, client: RedisClient, channel: str, config: HealthConfig) -> None:
        self.client = client
        self.channel = channel
        self.config = config

    async def _next(self, pubsub: Any, deadline: float, want: str, data: str | None = None) -> bool:
        while time.perf_counter() < deadline:
            message = await pubsub.get_message(timeout=max(0.0, deadline - time.perf_counter()))
            if message is None:
                continue
            if text_of(message.get("type")) == want and (
                data is None or text_of(message.get("data")) == data
            ):
                return True
        return False

    async def run(self) -> ComponentHealth:
        checks = CheckSet(self.name, "datastore", self.config)
        try:
            client = await ready(self.client)
            if is_cluster(client):  # every primary; sharded pub/sub on 7.0+ (what emit.lua uses there)
                sharded = await server_version(client) >= (7, 0)
                return await ShardedPubSubCheck(client, self.channel, self.config, sharded=sharded).run()
        except UNREACHABLE as exc:
            checks.add("responseTime", None, "ms", level="down", output=f"unreachable: {exc}")
            return checks.component()
        pubsub = self.client.pubsub()
        token = uuid.uuid4().hex
        deadline = time.perf_counter() + self.config.check_timeout * 0.9
        try:
            await pubsub.subscribe(self.channel)
            if not await self._next(pubsub, deadline, "subscribe"):
                checks.add("responseTime", None, "ms", level="critical", output="subscription not confirmed")
                return checks.component()
            started = time.perf_counter()
            await self.client.publish(self.channel, token)
            if await self._next(pubsub, deadline, "message", token):
                checks.add("responseTime", round((time.perf_counter() - started) * 1000, 3), "ms")
            else:
                checks.add("responseTime", None, "ms", level="critical", output="probe message not delivered")
        except UNREACHABLE as exc:
            checks.add("responseTime", None, "ms", level="down", output=f"unreachable: {exc}")
        finally:
            with contextlib.suppress(*UNREACHABLE):  # the connection is gone anyway; already reported above
                await pubsub.aclose()
        return checks.component()


class ReportingComponentCheck:
    """Replay or migration: each figure of its snapshot becomes the check ``<component>:<camelName>``.

    Numbers, booleans and strings are reported (e.g. ``recordings_in_progress`` -> ``replay:recordingsInProgress``,
    ``sync_lag_seconds`` -> ``migration:syncLagSeconds``) and judged by the threshold of that name; an optional
    ``level`` entry (with ``output``) is the component's own verdict."""

    def __init__(self, name: str, target: object, config: HealthConfig, store: SessionStore | None) -> None:
        self.name = name
        self.target = target
        self.config = config
        self.store = store

    async def run(self) -> ComponentHealth:
        checks = CheckSet(self.name, "component", self.config)
        try:
            snapshot = await snapshot_for(self.name, self.target, self.store)()
        except MissingHealthApi as exc:
            checks.add("instrumented", False, level="warning", output=f"{exc}: its health is unknown")
            return checks.component()
        except UNREACHABLE as exc:
            checks.add("snapshot", None, level="critical", output=f"reading its figures failed: {exc}")
            return checks.component()
        values = dict(snapshot)
        own_level = values.pop("level", "healthy")
        own_output = values.pop("output", None)
        for name, value in sorted(values.items()):
            if isinstance(value, int | float | str | bool) or value is None:
                checks.add(camel(str(name)), value)
        if own_level in ("warning", "critical", "down"):
            checks.add("level", own_level, level=own_level, output=str(own_output or own_level))
        return checks.component(details={str(k): v for k, v in values.items()})
