"""Health, maintenance and analytics on a real local Redis Cluster: every primary is seen, a dead one is named."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from huddle import SessionManager, SessionManagerConfig
from huddle.backend.topology import EmbeddedCluster, binary_version
from huddle.health import HealthConfig, SessionHealthCheck

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(masters=3, replicas=1) as local:
        yield local


@pytest.fixture
async def manager(cluster: EmbeddedCluster) -> AsyncIterator[SessionManager]:
    config = SessionManagerConfig(redis_url=cluster.url, namespace=f"t{uuid.uuid4().hex[:10]}")
    async with SessionManager(config) as built:
        yield built


LENIENT = {  # a loaded 2-core box must not turn round trips into warnings: these tests judge other figures
    "redis:responseTime": {"warning": 30_000},
    "pubsub:responseTime": {"warning": 30_000},
    "process:eventLoopLag": {"warning": 30_000},
}


@pytest.fixture
async def health(manager: SessionManager) -> AsyncIterator[SessionHealthCheck]:
    async with SessionHealthCheck(HealthConfig(check_interval=60, thresholds=LENIENT)) as checker:
        await checker.initialize(session_manager=manager)
        yield checker


def admin(port: int) -> redis.Redis:
    return redis.Redis(port=port, decode_responses=True)


def names(nodes: list[object]) -> set[str]:
    return {f"127.0.0.1:{node.port}" for node in nodes}  # type: ignore[attr-defined]


async def test_the_redis_component_lists_every_primary_and_replica_with_its_slots_and_role(
    cluster: EmbeddedCluster, health: SessionHealthCheck
) -> None:
    report = await health.get_health_status(refresh=True)
    redis_health = report.components["redis"]
    nodes = redis_health.details["nodes"]
    primaries = [node for node in nodes if node["type"] == "primary"]
    replicas = [node for node in nodes if node["type"] != "primary"]
    assert {node["node"] for node in primaries} == names(cluster.masters())
    assert len(replicas) == 3
    assert sum(node["slots"] for node in primaries) == 16384
    assert all(node["reachable"] and node["role"] == "master" for node in primaries)
    assert {node["primary"] for node in replicas} == names(cluster.masters())  # one replica each
    assert all(node["reachable"] and node["replication_state"] == "online" for node in replicas)
    assert redis_health.level == "healthy"
    assert redis_health.checks["redis:clusterState"].observed_value == "ok"
    assert redis_health.checks["redis:slotsOk"].observed_value == 16384
    assert redis_health.checks["redis:replicasInSync"].observed_value == 3
    assert redis_health.details["version"] == max(n["version"] for n in primaries)  # all nodes run one binary


async def test_used_memory_on_a_cluster_is_the_sum_over_the_primaries(
    cluster: EmbeddedCluster, health: SessionHealthCheck
) -> None:
    report = await health.get_health_status(refresh=True)
    redis_health = report.components["redis"]
    per_node = [n["used_memory_bytes"] for n in redis_health.details["nodes"] if n["type"] == "primary"]
    assert redis_health.checks["redis:usedMemory"].observed_value == sum(per_node)
    assert redis_health.details["primaries"] == 3


async def test_memory_utilization_is_judged_on_the_fullest_primary_and_names_it(
    cluster: EmbeddedCluster, manager: SessionManager
) -> None:
    fullest = cluster.masters()[1]
    node = admin(fullest.port)
    used = int(node.info("memory")["used_memory"])
    node.config_set("maxmemory", str(used * 4))  # about 25 % used: far from evicting anything
    config = HealthConfig(
        check_interval=60,
        thresholds={**LENIENT, "redis:memoryUtilization": {"warning": 0.1, "critical": 0.9}},
    )
    try:
        async with SessionHealthCheck(config) as checker:
            await checker.initialize(session_manager=manager)
            report = await checker.get_health_status(refresh=True)
    finally:
        node.config_set("maxmemory", "0")
    check = report.components["redis"].checks["redis:memoryUtilization"]
    assert check.level == "warning"
    assert f"127.0.0.1:{fullest.port}" in (check.output or "")
    assert 0.1 <= float(check.observed_value) < 0.9  # type: ignore[arg-type]


async def test_the_pubsub_probe_round_trips_on_every_primary_with_the_pubsub_huddle_uses(
    cluster: EmbeddedCluster, health: SessionHealthCheck
) -> None:
    sharded = binary_version(cluster.nodes[0].binary) >= (7, 0)
    before = {n.port: admin(n.port).info("commandstats") for n in cluster.masters()}
    report = await health.get_health_status(refresh=True)
    pubsub = report.components["pubsub"]
    assert pubsub.level == "healthy"
    assert pubsub.checks["pubsub:responseTime"].observed_value is not None
    command = "cmdstat_spublish" if sharded else "cmdstat_publish"
    if sharded:
        assert pubsub.details["mode"] == "sharded"
        assert set(pubsub.details["nodes"]) == names(cluster.masters())
        for master in cluster.masters():  # SPUBLISH reached every primary
            after = admin(master.port).info("commandstats")
            assert after[command]["calls"] > before[master.port].get(command, {}).get("calls", 0)
    else:  # 6.2: classic pub/sub, subscribed on every primary (the cluster bus broadcasts PUBLISH)
        assert pubsub.details["mode"] == "classic"
        assert set(pubsub.details["nodes"]) == names(cluster.masters())


async def test_the_sessions_component_counts_sessions_on_every_master(
    cluster: EmbeddedCluster, manager: SessionManager, health: SessionHealthCheck
) -> None:
    sids = cluster.ids_on_every_master(lambda sid: manager.keys.session(sid).meta, per_master=2)
    for sid in sids:
        await manager.create_session("alpha", session_id=sid)
    report = await health.get_health_status(refresh=True)
    assert report.components["sessions"].details["active_sessions"] == len(sids)
    assert cluster.distribution([manager.keys.session(s).meta for s in sids]) == {
        m.port: 2 for m in cluster.masters()
    }


async def test_prometheus_exposes_each_node_with_a_node_label(
    cluster: EmbeddedCluster, health: SessionHealthCheck
) -> None:
    await health.get_health_status(refresh=True)
    families = {f.name: f for f in text_string_to_metric_families(health.prometheus().decode())}
    up = {(s.labels["node"], s.labels["type"]): s.value for s in families["huddle_redis_node_up"].samples}
    assert {node for node, kind in up if kind == "primary"} == names(cluster.masters())
    assert len(up) == 6 and set(up.values()) == {1.0}
    slots = {s.labels["node"]: s.value for s in families["huddle_redis_node_slots"].samples}
    assert sum(slots.values()) == 16384


async def test_the_manager_health_check_reads_every_primary(
    cluster: EmbeddedCluster, manager: SessionManager
) -> None:
    status = await manager.health_check()
    smallest = min(int(admin(m.port).info("memory")["used_memory"]) for m in cluster.masters())
    assert status.status == "healthy"
    assert status.used_memory_bytes is not None and status.used_memory_bytes > 2 * smallest  # a sum of three


async def test_maintenance_removes_stale_agent_entries_on_every_master(
    cluster: EmbeddedCluster, manager: SessionManager
) -> None:
    agents = cluster.ids_on_every_master(manager.keys.agent_sessions, per_master=2, prefix="agent-")
    sid = await manager.create_session("alpha")
    for agent in agents:  # entries for a session the agent never joined: what a crashed leave leaves behind
        node = admin(cluster.node_of_key(manager.keys.agent_sessions(agent)).port)
        node.zadd(manager.keys.agent_sessions(agent), {sid: 1})
    report = await manager.perform_maintenance()
    assert report.removed_agent_entries == len(agents)
    for agent in agents:
        node = admin(cluster.node_of_key(manager.keys.agent_sessions(agent)).port)
        assert node.zcard(manager.keys.agent_sessions(agent)) == 0


async def test_stats_count_sessions_and_agents_on_every_master(
    cluster: EmbeddedCluster, manager: SessionManager
) -> None:
    sids = cluster.ids_on_every_master(lambda sid: manager.keys.session(sid).meta, per_master=2)
    for index, sid in enumerate(sids):
        await manager.create_session(f"agent-{index}", session_id=sid)
        await manager.emit_event(sid, {"type": "modified"}, f"agent-{index}")
    stats = await manager.get_stats()
    assert stats.active_sessions == len(sids)
    assert stats.distinct_agents == len(sids)
    assert stats.events_scanned == stats.total_events > 0


@pytest.fixture
def fragile() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(masters=3, replicas=0, node_timeout_ms=1000) as local:
        yield local


async def test_a_dead_master_makes_redis_critical_naming_the_node_everywhere(
    fragile: EmbeddedCluster,
) -> None:
    config = SessionManagerConfig(
        redis_url=fragile.url, namespace=f"t{uuid.uuid4().hex[:8]}", socket_timeout=2, connect_timeout=1
    )
    checks = HealthConfig(check_interval=60, thresholds=LENIENT)
    async with SessionManager(config) as manager, SessionHealthCheck(checks) as checker:
        await checker.initialize(session_manager=manager)
        before = (await checker.get_health_status(refresh=True)).components["redis"]
        assert before.level == "healthy", before.output
        victim = fragile.masters()[0]
        fragile.kill(victim)
        report = await checker.get_health_status(refresh=True)
        status = await manager.health_check()
        metrics = health_metrics(checker)
    name = f"127.0.0.1:{victim.port}"
    redis_health = report.components["redis"]
    assert redis_health.level == "critical", redis_health.output
    assert redis_health.checks["redis:connection"].status == "fail"
    assert name in (redis_health.output or "")
    dead = [n for n in redis_health.details["nodes"] if n["node"] == name]
    assert len(dead) == 1 and dead[0]["reachable"] is False and dead[0]["slots"] > 0
    sessions = report.components["sessions"]  # the index shards on the other masters are still read
    assert sessions.level == "critical", sessions.output
    assert sessions.checks["sessions:unreadableShards"].observed_value > 0  # type: ignore[operator]
    assert report.overall == "critical", {
        n: c.output for n, c in report.components.items() if c.level == "down"
    }
    assert metrics[(name, "primary")] == 0.0 and sorted(metrics.values()) == [0.0, 1.0, 1.0]
    assert status.status == "critical", status
    assert any(name in problem for problem in status.problems), status


def health_metrics(checker: SessionHealthCheck) -> dict[tuple[str, str], float]:
    families = {f.name: f for f in text_string_to_metric_families(checker.prometheus().decode())}
    return {(s.labels["node"], s.labels["type"]): s.value for s in families["huddle_redis_node_up"].samples}


def test_huddle_serve_on_a_cluster_node_url_reports_every_node_over_http(cluster: EmbeddedCluster) -> None:
    from test_serve import Served  # the same real `huddle serve` subprocess the serve tests use

    node_url = f"redis://127.0.0.1:{cluster.ports[0]}/0"  # no cluster option: detected by the server process
    server = Served(node_url, f"serve{uuid.uuid4().hex[:8]}")
    try:
        server.wait_for(lambda: server.get("/health/redis").status_code == 200, "a healthy redis component")
        body = server.get("/health/redis").json()
        metrics = server.get("/metrics").text
    finally:
        assert server.stop() == 0
    nodes = body["component"]["details"]["nodes"]
    assert {node["node"] for node in nodes if node["type"] == "primary"} == names(cluster.masters())
    assert body["component"]["checks"]["redis:clusterState"]["observedValue"] == "ok"
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    up = {s.labels["node"] for s in families["huddle_redis_node_up"].samples if s.value == 1.0}
    assert names(cluster.masters()) <= up
