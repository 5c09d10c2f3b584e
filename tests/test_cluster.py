"""Huddle on a real local Redis Cluster (3 masters + 3 replicas): every feature, unchanged code."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from huddle import EmbeddedRedis, MigrationConfig, SessionManager, SessionManagerConfig, SessionMigration
from huddle.backend.connection import is_cluster, topology
from huddle.backend.topology import EmbeddedCluster, binary_version
from huddle.core.keys import KeySpace
from huddle.core.subscription import session_notices
from huddle.errors import ConfigError

pytestmark = pytest.mark.cluster

PROCESSES = 3
EMITS_PER_SESSION = 40


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(masters=3, replicas=1) as local:
        yield local


@pytest.fixture
async def manager(cluster: EmbeddedCluster) -> AsyncIterator[SessionManager]:
    config = SessionManagerConfig(redis_url=cluster.url, namespace=f"t{uuid.uuid4().hex[:10]}")
    async with SessionManager(config) as built:
        yield built


def spread_session_ids(cluster: EmbeddedCluster, keys: KeySpace, per_master: int) -> list[str]:
    """Session ids chosen so that every master serves exactly ``per_master`` of them."""
    return cluster.ids_on_every_master(lambda sid: keys.session(sid).meta, per_master)


def test_a_cluster_url_gives_a_cluster_client_and_a_plain_node_url_is_detected(
    cluster: EmbeddedCluster,
) -> None:
    explicit = SessionManager(SessionManagerConfig(redis_url=cluster.url))
    detected = SessionManager(SessionManagerConfig(redis_url=f"redis://127.0.0.1:{cluster.ports[2]}/0"))
    forced_off = SessionManager(SessionManagerConfig(redis_url=cluster.url.replace("true", "false")))
    assert topology(explicit.client) == "cluster"
    assert is_cluster(detected.client)
    assert topology(forced_off.client) == "standalone"


def test_a_cluster_url_asking_for_a_database_other_than_0_is_a_config_error(cluster: EmbeddedCluster) -> None:
    with pytest.raises(ConfigError, match="only database 0"):
        SessionManager(SessionManagerConfig(redis_url=f"redis://127.0.0.1:{cluster.ports[0]}/3?cluster=true"))


async def test_every_key_of_a_session_lives_in_one_slot_and_sessions_spread_over_all_masters(
    cluster: EmbeddedCluster, manager: SessionManager
) -> None:
    sids = [await manager.create_session("alpha") for _ in range(30)]
    for sid in sids[:5]:
        keys = manager.keys.session(sid)
        assert len({cluster.keyslot(key) for key in [*keys.all, keys.channel]}) == 1
    spread = cluster.distribution([manager.keys.session(sid).meta for sid in sids])
    assert len(spread) == 3 and all(count > 0 for count in spread.values()), spread
    shards = cluster.distribution(manager.keys.active_indexes())
    assert all(count > 0 for count in shards.values()), f"index shards all on one node: {shards}"


def _writer(url: str, namespace: str, session_ids: list[str], agent: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    async def run() -> dict[str, list[int]]:
        async with SessionManager(SessionManagerConfig(redis_url=url, namespace=namespace)) as manager:
            for sid in session_ids:
                await manager.join_session(sid, agent)

            async def emit_all(sid: str) -> list[int]:
                event = {"type": "modified", "data": {"agent": agent}}
                return list(
                    await asyncio.gather(
                        *(manager.emit_event(sid, event, agent) for _ in range(EMITS_PER_SESSION))
                    )
                )

            seqs = await asyncio.gather(*(emit_all(sid) for sid in session_ids))
            return dict(zip(session_ids, seqs, strict=True))

    out.put((agent, asyncio.run(run())))


async def test_processes_emitting_on_sessions_across_all_masters_get_gapless_unique_seqs(
    cluster: EmbeddedCluster, manager: SessionManager
) -> None:
    sids = spread_session_ids(cluster, manager.keys, per_master=2)
    for sid in sids:
        await manager.create_session("owner", session_id=sid)
    assert len(set(cluster.distribution([manager.keys.session(s).meta for s in sids]).values())) == 1
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    url, namespace = manager.config.redis_url, manager.config.namespace
    workers = [
        ctx.Process(target=_writer, args=(url, namespace, sids, f"agent-{i}", queue))
        for i in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    results = [await asyncio.to_thread(queue.get, True, 90) for _ in workers]
    for worker in workers:
        await asyncio.to_thread(worker.join, 30)
        assert worker.exitcode == 0
    for sid in sids:
        returned = sorted(seq for _, per_session in results for seq in per_session[sid])
        assert len(returned) == len(set(returned)) == PROCESSES * EMITS_PER_SESSION
        events = await manager.get_events(sid)
        assert [event.seq for event in events] == list(range(1, len(events) + 1))
        assert sorted(e.seq for e in events if e.type == "modified") == returned


async def test_listings_stats_and_maintenance_merge_what_every_master_holds(
    cluster: EmbeddedCluster, manager: SessionManager
) -> None:
    sids = spread_session_ids(cluster, manager.keys, per_master=2)
    for sid in sids:
        await manager.create_session("alpha", session_id=sid)
        await manager.emit_event(sid, {"type": "modified"}, "alpha")
    await manager.complete_session(sids[0], "alpha")
    assert set(await manager.list_active_sessions()) == set(sids[1:])
    assert set(await manager.get_sessions_by_agent("alpha")) == set(sids)
    stats = await manager.get_stats()
    assert stats.active_sessions == 5 and stats.total_events == 5 * 2
    report = await manager.perform_maintenance()
    assert report.scanned_index_entries >= 5
    health = await manager.health_check()
    assert health.status == "healthy" and health.redis_reachable and health.scripts_loaded


async def test_subscribe_and_the_lifecycle_feed_work_on_a_cluster(manager: SessionManager) -> None:
    notices: list[str] = []

    async def watch() -> None:
        async for notice in manager.lifecycle():
            notices.append(notice.type)
            if notice.type == "complete":
                return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.3)  # pub/sub has no backlog: let the feed subscribe first
    sid = await manager.create_session("alpha")
    await manager.join_session(sid, "beta")
    for i in range(5):
        await manager.emit_event(sid, {"type": "modified", "data": {"i": i}}, "beta")
    await manager.complete_session(sid, "alpha")
    seqs = [event.seq async for event in manager.subscribe(sid)]
    assert seqs == list(range(1, 9))
    await asyncio.wait_for(watcher, 10)
    assert notices == ["start", "join", "complete"]


async def test_session_notices_use_sharded_pubsub_on_7_and_plain_pubsub_on_6_2(
    cluster: EmbeddedCluster, manager: SessionManager
) -> None:
    sharded = binary_version(cluster.binary) >= (7, 0)
    assert await manager.store.publish_command() == ("SPUBLISH" if sharded else "PUBLISH")
    sid = await manager.create_session("alpha")
    channel = manager.keys.session_channel(sid)
    received: list[int] = []

    async def listen() -> None:
        async for notice in session_notices(manager, sid):
            received.append(notice["seq"])
            if len(received) == 3:
                return

    listener = asyncio.create_task(listen())
    # Sharded: the subscription must sit on the node that owns the channel's slot (it carries the session tag).
    node = cluster.node_of_key(channel)
    admin = redis.Redis(port=node.port, decode_responses=True)
    numsub = ("PUBSUB", "SHARDNUMSUB", channel) if sharded else ("PUBSUB", "NUMSUB", channel)
    for _ in range(100):
        if sum(redis.Redis(port=p).execute_command(*numsub)[1] for p in cluster.ports if p):
            break
        await asyncio.sleep(0.02)
    if sharded:
        assert admin.execute_command(*numsub)[1] == 1
    for _ in range(3):
        await manager.emit_event(sid, {"type": "modified"}, "alpha")
    await asyncio.wait_for(listener, 10)
    assert received == [2, 3, 4]


async def test_scripts_are_reloaded_on_every_node_after_a_script_flush(
    cluster: EmbeddedCluster, manager: SessionManager
) -> None:
    sids = spread_session_ids(cluster, manager.keys, per_master=1)
    for node in cluster.masters():
        redis.Redis(port=node.port).script_flush()
    assert not await manager.store.scripts_loaded()
    for sid in sids:
        assert await manager.create_session("alpha", session_id=sid) == sid
        assert await manager.emit_event(sid, {"type": "modified"}, "alpha") == 2
    emit_sha = manager.store.scripts._scripts["emit"].sha
    assert all(redis.Redis(port=node.port).script_exists(emit_sha) == [True] for node in cluster.masters())


async def test_emits_during_a_slot_migration_follow_moved_and_ask_and_stay_gapless(
    cluster: EmbeddedCluster, manager: SessionManager
) -> None:
    sid = await manager.create_session("alpha")
    meta = manager.keys.session(sid).meta
    slot, source = cluster.keyslot(meta), cluster.node_of_key(meta)
    target = next(node for node in cluster.masters() if node.port != source.port)
    stop = asyncio.Event()
    seqs: list[int] = []

    async def emit_until_stopped() -> None:
        while not stop.is_set() or len(seqs) < 20:
            seqs.append(await manager.emit_event(sid, {"type": "modified"}, "alpha"))

    writer = asyncio.create_task(emit_until_stopped())
    await asyncio.sleep(0.1)
    moved = await asyncio.to_thread(cluster.migrate_slot, slot, target)
    stop.set()
    await asyncio.wait_for(writer, 30)
    assert moved >= 3  # meta, events, agents (+ checkpoints)
    assert cluster.node_of_key(meta).port == target.port
    events = await manager.get_events(sid)
    assert [event.seq for event in events] == list(range(1, len(events) + 1))
    assert set(seqs) <= {event.seq for event in events}
    assert await manager.emit_event(sid, {"type": "modified"}, "alpha") == events[-1].seq + 1


async def test_an_emit_with_min_replicas_is_confirmed_by_the_slot_replica(manager: SessionManager) -> None:
    sid = await manager.create_session("alpha")
    assert await manager.emit_event(sid, {"type": "modified"}, "alpha", min_replicas=1) == 2


async def test_sessions_migrate_from_a_standalone_server_to_a_cluster_and_validate(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis
) -> None:
    namespace = f"t{uuid.uuid4().hex[:10]}"
    source = SessionManagerConfig(redis_url=redis_server.url, namespace=namespace)
    async with SessionManager(source) as manager:
        sids = spread_session_ids(cluster, manager.keys, per_master=2)
        for sid in sids:
            await manager.create_session("alice", session_id=sid)
            await manager.emit_event(sid, {"type": "modified", "data": {"sid": sid}}, "alice")
    config = MigrationConfig(source_url=redis_server.url, target_url=cluster.url, namespace=namespace)
    async with SessionMigration(config) as migration:
        task = await migration.wait(await migration.start_full_migration(validate_after=True))
    assert task.status == "completed" and task.progress.migrated_sessions == 6
    assert task.validation is not None and task.validation.ok and task.validation.total_checked == 6
    target = SessionManagerConfig(redis_url=cluster.url, namespace=namespace)
    async with SessionManager(target) as on_cluster:
        for node in cluster.masters():  # each master really holds its two sessions
            held = redis.Redis(port=node.port).keys(f"{namespace}:{{*}}:meta")
            assert len(held) == 2, (node.port, held)
        for sid in sids:
            events = await on_cluster.get_events(sid)
            assert [event.seq for event in events] == [1, 2]
            assert await on_cluster.emit_event(sid, {"type": "modified"}, "alice") == 3
