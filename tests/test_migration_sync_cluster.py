"""Cross-instance sync from a real local Redis Cluster: one polling reader for every link, status across slots."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_migration_sync import until

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.topology import EmbeddedCluster
from huddle.migration import MigrationConfig, SessionMigration

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(masters=3, replicas=0) as local:
        yield local


async def test_real_time_sync_from_a_cluster_mirrors_events_and_publishes_every_link(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis, namespace: str
) -> None:
    source_config = SessionManagerConfig(redis_url=cluster.url, namespace=namespace)
    target_config = SessionManagerConfig(redis_url=redis_server.url, namespace=namespace)
    config = MigrationConfig(source_url=cluster.url, target_url=redis_server.url, namespace=namespace)
    async with (
        SessionManager(source_config) as source,
        SessionManager(target_config) as target,
        SessionMigration(config) as migration,
    ):
        # More links than the connection pool (64): one blocked reader per link would starve it.
        sids = [await source.create_session("alice") for _ in range(80)]
        for sid in sids:
            await migration.setup_cross_instance_sync(sid, "target", "real-time")
        for round_ in range(3):
            for sid in sids:
                await source.emit_event(sid, {"type": "modified", "data": {"i": round_}}, "alice")
        # No multi-slot XREAD on a cluster: the reader polls, so no connection is ever blocked on a node.
        infos = await source.client.info("clients", target_nodes=source.client.PRIMARIES)
        assert [info["blocked_clients"] for info in infos.values()] == [0, 0, 0]

        async def all_synced() -> bool:
            for sid in sids:
                doc = await target.store.get_session(sid)
                if doc is None or doc.last_seq != (await source.get_session(sid)).last_seq:
                    return False
            return True

        await until(all_synced)
        for sid in sids:
            assert [e.data for e in await target.get_events(sid)] == [
                e.data for e in await source.get_events(sid)
            ]
        listed = await migration.fetch_cross_instance_sessions()
        assert sorted(link.session_id for link in listed) == sorted(sids)
        assert await migration.stop_cross_instance_sync(sids[0])
        assert sorted(link.session_id for link in await migration.fetch_cross_instance_sessions()) == sorted(
            sids[1:]
        )
