"""The pub/sub round trip huddle really uses on a Redis Cluster of 7.0+: SSUBSCRIBE + SPUBLISH on every primary.

emit.lua publishes session notices with SPUBLISH there, so the probe uses one channel per primary (its name
hashed into a slot that primary serves) and reports the slowest round trip, naming any primary that fails."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from ..connection import RedisClient
from .checks import UNREACHABLE, CheckSet, _text
from .cluster_check import SLOTS
from .config import HealthConfig
from .report import ComponentHealth, Level


def probe_channels(client: RedisClient, channel: str) -> dict[str, str]:
    """One probe channel per primary (``<channel>:<n>`` hashed into a slot that primary serves)."""
    wanted = {node.name for node in client.get_primaries()}
    found: dict[str, str] = {}
    for suffix in range(SLOTS * 4):
        if len(found) == len(wanted):
            break
        name = f"{channel}:{suffix}"
        node = client.get_node_from_key(name)
        if node is not None and node.name in wanted and node.name not in found:
            found[node.name] = name
    return found


class ShardedPubSubCheck:
    """The pub/sub round trip huddle really uses on a 7.0+ cluster: SSUBSCRIBE + SPUBLISH, on every primary."""

    name = "pubsub"

    def __init__(self, client: RedisClient, channel: str, config: HealthConfig) -> None:
        self.client = client
        self.channel = channel
        self.config = config

    async def _wait(self, pubsub: Any, deadline: float, want: str, data: str | None = None) -> bool:
        while time.perf_counter() < deadline:
            left = max(0.0, deadline - time.perf_counter())
            message = await pubsub.get_sharded_message(
                ignore_subscribe_messages=False, timeout=min(left, 0.25)
            )
            if message is None:
                continue
            if _text(message.get("type")) == want and (data is None or _text(message.get("data")) == data):
                return True
        return False

    async def _probe(self, node: str, channel: str, deadline: float) -> tuple[str, float | None, str | None]:
        """(node, round trip ms or None, why it failed)."""
        pubsub = self.client.pubsub()
        token = uuid.uuid4().hex
        try:
            await pubsub.ssubscribe(channel)
            if not await self._wait(pubsub, deadline, "ssubscribe"):
                return node, None, "subscription not confirmed"
            started = time.perf_counter()
            await self.client.spublish(channel, token)
            if await self._wait(pubsub, deadline, "smessage", token):
                return node, round((time.perf_counter() - started) * 1000, 3), None
            return node, None, "probe message not delivered"
        except UNREACHABLE as exc:
            return node, None, f"unreachable: {exc}"
        finally:
            with contextlib.suppress(*UNREACHABLE):
                await pubsub.aclose()

    async def run(self) -> ComponentHealth:
        checks = CheckSet(self.name, "datastore", self.config)
        deadline = time.perf_counter() + self.config.check_timeout * 0.9
        try:
            await self.client.initialize()
            channels = probe_channels(self.client, self.channel)
        except UNREACHABLE as exc:
            checks.add("responseTime", None, "ms", level="down", output=f"unreachable: {exc}")
            return checks.component()
        results = await asyncio.gather(*(self._probe(n, c, deadline) for n, c in channels.items()))
        failed = [f"{node}: {why}" for node, _, why in results if why is not None]
        times = [(ms, node) for node, ms, _ in results if ms is not None]
        details = {"mode": "sharded", "nodes": {node: ms for node, ms, _ in results}}
        if failed:
            level: Level = "down" if not times else "critical"
            checks.add("responseTime", None, "ms", level=level, output="; ".join(failed))
        else:
            slowest, node = max(times)
            checks.add("responseTime", slowest, "ms", output=f"slowest primary {node} (SPUBLISH round trip)")
        return checks.component(details=details)
