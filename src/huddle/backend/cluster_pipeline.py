"""Auto-pipelining on Redis Cluster: script calls of one loop tick share one round trip per node.

A script call (``EVALSHA`` / ``FCALL``...) whose keys all hash to one slot is queued for the primary that serves
the slot in the client's slot map, in a per-node :class:`~huddle.backend.autopipeline.AutoPipeline` on that node's
own connections. Anything the cluster must sort out goes back to redis-py's cluster path for that caller alone:
a redirection (MOVED, ASK), TRYAGAIN, CLUSTERDOWN, a node that cannot be reached or has no free connection. That
path refreshes the slot map, follows the redirection and retries as it always does; the command is then sent
again, like redis-py re-sends a command after a connection error (huddle's scripts carry idempotency tokens).
Other commands, and everything before the client knows the slot map, take the cluster path directly.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import (
    AskError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .autopipeline import AutoPipeline

SCRIPT_CALLS = frozenset({"EVALSHA", "EVAL", "FCALL", "EVALSHA_RO", "EVAL_RO", "FCALL_RO"})

FALL_BACK = (
    MovedError,
    AskError,
    TryAgainError,
    ClusterDownError,
    MasterDownError,
    SlotNotCoveredError,
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
)
"""Outcomes of a batched call that redis-py's cluster path handles (redirect, refresh, retry) instead."""


class _NodePool:
    """The connection-pool face of one cluster node (what an ``AutoPipeline`` lane checks connections out of)."""

    def __init__(self, node: Any) -> None:
        self.node = node

    async def get_connection(self) -> Any:
        conn = self.node.acquire_connection()  # MaxConnectionsError (a ConnectionError) when all are busy
        try:
            await self.node.disconnect_if_needed(conn)
        except BaseException:
            self.node.release(conn)
            raise
        return conn

    async def release(self, conn: Any) -> None:
        self.node.release(conn)


class NodeSource:
    """One node seen as a client by ``AutoPipeline``: its connections and its reply callbacks."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.connection_pool = _NodePool(node)
        self.response_callbacks = node.response_callbacks


class ClusterBatchers:
    """The per-node queues of one cluster client."""

    def __init__(self, cluster: Any) -> None:
        self._cluster = cluster
        self._by_node: dict[str, AutoPipeline] = {}

    def for_call(self, args: tuple[Any, ...], options: dict[str, Any]) -> AutoPipeline | None:
        """The queue of the node that serves this call's slot, or None: take the cluster path."""
        cluster = self._cluster
        name = args[0]
        if (
            getattr(cluster, "_initialize", True)  # no slot map yet: the cluster path builds it
            or not isinstance(name, str)
            or name.upper() not in SCRIPT_CALLS
            or options.get("target_nodes") is not None
            or len(args) < 4
        ):
            return None
        try:
            numkeys = int(args[2])
        except (TypeError, ValueError):
            return None
        keys = args[3 : 3 + numkeys]
        if not keys:
            return None
        slot = cluster.keyslot(keys[0])
        if any(cluster.keyslot(key) != slot for key in keys[1:]):
            return None  # the cluster path raises its cross-slot error
        try:
            node = cluster.nodes_manager.get_node_from_slot(slot)
        except SlotNotCoveredError:
            return None
        batcher = self._by_node.get(node.name)
        if batcher is None or batcher.source.node is not node:  # new node, or the node object was replaced
            batcher = AutoPipeline(NodeSource(node))
            self._by_node[node.name] = batcher
        return batcher

    def reset(self) -> None:
        """Forget the queues (the client's nodes are being closed; new ones start with the next call)."""
        self._by_node.clear()
