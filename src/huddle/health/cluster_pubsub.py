"""The pub/sub round trip huddle really uses on a Redis Cluster, probed on every primary.

On 7.0+ emit.lua publishes session notices with SPUBLISH, so the probe uses one channel per primary (its name
hashed into a slot that primary serves), SSUBSCRIBE + SPUBLISH. On 6.2 huddle uses classic pub/sub, which the
cluster bus broadcasts: the probe subscribes and PUBLISHes on each primary. Either
way it reports the slowest round trip and names any primary whose probe failed."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from ..backend.connection import RedisClient
from .checkset import UNREACHABLE, CheckSet, text_of
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
    """Pub/sub round trip on every primary: sharded (SSUBSCRIBE/SPUBLISH) on 7.0+, else classic."""

    name = "pubsub"

    def __init__(
        self, client: RedisClient, channel: str, config: HealthConfig, *, sharded: bool = True
    ) -> None:
        self.client = client
        self.channel = channel
        self.config = config
        self.sharded = sharded

    async def _wait(self, pubsub: Any, deadline: float, want: str, data: str | None = None) -> bool:
        while time.perf_counter() < deadline:
            left = max(0.0, deadline - time.perf_counter())
            if self.sharded:
                message = await pubsub.get_sharded_message(
                    ignore_subscribe_messages=False, timeout=min(left, 0.25)
                )
            else:
                message = await pubsub.get_message(timeout=min(left, 0.25))
            if message is None:
                continue
            if text_of(message.get("type")) == want and (
                data is None or text_of(message.get("data")) == data
            ):
                return True
        return False

    async def _probe(self, node: str, channel: str, deadline: float) -> tuple[str, float | None, str | None]:
        """(node, round trip ms or None, why it failed)."""
        token = uuid.uuid4().hex
        if self.sharded:
            pubsub = self.client.pubsub()
            kinds = ("ssubscribe", "smessage")
        else:  # classic pub/sub: subscribe on this primary, PUBLISH anywhere, the cluster bus must deliver it
            pubsub = self.client.pubsub(node=self.client.get_node(node_name=node))
            kinds = ("subscribe", "message")
        try:
            await (pubsub.ssubscribe if self.sharded else pubsub.subscribe)(channel)
            if not await self._wait(pubsub, deadline, kinds[0]):
                return node, None, "subscription not confirmed"
            started = time.perf_counter()
            if self.sharded:
                await self.client.spublish(channel, token)  # routed to the channel's slot: this primary
            else:  # on this primary too, so a dead other node (e.g. the client's default) cannot fail this probe
                await self.client.publish(channel, token, target_nodes=self.client.get_node(node_name=node))
            if await self._wait(pubsub, deadline, kinds[1], token):
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
            if self.sharded:
                channels = probe_channels(self.client, self.channel)
            else:
                channels = {node.name: self.channel for node in self.client.get_primaries()}
        except UNREACHABLE as exc:
            checks.add("responseTime", None, "ms", level="down", output=f"unreachable: {exc}")
            return checks.component()
        results = await asyncio.gather(*(self._probe(n, c, deadline) for n, c in channels.items()))
        failed = [f"{node}: {why}" for node, _, why in results if why is not None]
        times = [(ms, node) for node, ms, _ in results if ms is not None]
        mode = "sharded" if self.sharded else "classic"
        details = {"mode": mode, "nodes": {node: ms for node, ms, _ in results}}
        if failed:
            level: Level = "down" if not times else "critical"
            checks.add("responseTime", None, "ms", level=level, output="; ".join(failed))
        else:
            slowest, node = max(times)
            command = "SPUBLISH" if self.sharded else "PUBLISH"
            checks.add("responseTime", slowest, "ms", output=f"slowest primary {node} ({command} round trip)")
        return checks.component(details=details)
