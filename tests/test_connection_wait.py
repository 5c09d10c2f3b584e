"""``emit_event(min_replicas=...)`` on a cluster: WAIT goes to the master that owns the session's slot *now*."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis

from huddle import SessionManager, SessionManagerConfig
from huddle.backend.topology import EmbeddedCluster
from huddle.errors import ReplicationNotConfirmedError

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(masters=3, replicas=1) as local:
        yield local


def replica_of(cluster: EmbeddedCluster, port: int) -> int:
    info = redis.Redis(port=port, decode_responses=True).info("replication")
    return int(info["slave0"]["port"])


async def test_after_a_slot_moved_wait_is_asked_of_the_new_master_not_the_old_one(
    cluster: EmbeddedCluster,
) -> None:
    """The new master has no live replica: a WAIT sent (wrongly) to the old master would confirm the write."""
    config = SessionManagerConfig(
        redis_url=cluster.url, namespace=f"t{uuid.uuid4().hex[:8]}", replica_wait_timeout_ms=300
    )
    async with SessionManager(config) as manager:
        sid = await manager.create_session("alpha")
        meta = manager.keys.session(sid).meta
        assert await manager.emit_event(sid, {"type": "modified"}, "alpha", min_replicas=1) > 0
        old = cluster.node_of_key(meta)
        new = next(node for node in cluster.masters() if node.port != old.port)
        replica_port = replica_of(cluster, new.port)
        cluster.kill(next(node for node in cluster.nodes if node.port == replica_port))
        assert cluster.migrate_slot(cluster.keyslot(meta), new) > 0  # the manager's slot map is now stale
        with pytest.raises(ReplicationNotConfirmedError) as caught:
            await manager.emit_event(sid, {"type": "modified"}, "alpha", min_replicas=1)
        assert caught.value.details["replicas_acked"] == 0
        assert cluster.node_of_key(meta).port == new.port
        last = int(redis.Redis(port=new.port, decode_responses=True).hget(meta, "seq") or 0)
        assert last == caught.value.details["seq"]  # the event was written once, on the new master
        # and with the slot map refreshed, a master that has its replica still confirms
        other = await manager.create_session("beta")
        if cluster.node_of_key(manager.keys.session(other).meta).port != new.port:
            assert await manager.emit_event(other, {"type": "modified"}, "beta", min_replicas=1) > 0


async def test_during_a_slot_migration_the_script_and_wait_follow_ask_and_land_on_the_new_master(
    cluster: EmbeddedCluster,
) -> None:
    """Keys moved, slot still MIGRATING: ASK, then TRYAGAIN (huddle's scripts name keys that do not exist yet)
    until the migration ends; then the write and its WAIT go to the new master, whose replica is down."""
    config = SessionManagerConfig(
        redis_url=cluster.url, namespace=f"t{uuid.uuid4().hex[:8]}", replica_wait_timeout_ms=300
    )
    async with SessionManager(config) as manager:
        sid = await manager.create_session("alpha")
        meta = manager.keys.session(sid).meta
        slot = cluster.keyslot(meta)
        old = cluster.node_of_key(meta)
        new = next(node for node in cluster.masters() if node.port != old.port)
        source, target = (redis.Redis(port=n.port, decode_responses=True) for n in (old, new))
        source_id, target_id = (str(n.execute_command("CLUSTER", "MYID")) for n in (source, target))
        target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        keys = source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
        source.execute_command("MIGRATE", "127.0.0.1", new.port, "", 0, 5000, "KEYS", *keys)
        replica_port = replica_of(cluster, new.port)
        cluster.kill(next(node for node in cluster.nodes if node.port == replica_port))
        asked_before = asking_calls(target)
        emitting = asyncio.create_task(manager.emit_event(sid, {"type": "modified"}, "alpha", min_replicas=1))
        for _ in range(1000):  # until the importing node saw ASKING (or the emit ended)
            if asking_calls(target) > asked_before or emitting.done():
                break
            await asyncio.sleep(0.01)
        assert asking_calls(target) > asked_before  # the script was sent to the importing node behind ASKING
        for master in cluster.masters():  # finish the migration
            redis.Redis(port=master.port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        with pytest.raises(ReplicationNotConfirmedError) as caught:
            await emitting
        assert caught.value.details["replicas_acked"] == 0
        assert int(target.hget(meta, "seq") or 0) == caught.value.details["seq"]


def asking_calls(node: redis.Redis) -> int:
    return int(node.info("commandstats").get("cmdstat_asking", {}).get("calls", 0))
