"""Session migration to, from and within a real local Redis Cluster (3 masters + 3 replicas)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, cast

import pytest
import redis
from migration_support import raw_session, same_session

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.topology import EmbeddedCluster
from huddle.core.keys import KeySpace
from huddle.errors import MigrationTaskBusyError
from huddle.migration import MigrationConfig, MigrationTask, SessionMigration
from huddle.migration.sources import Batch, full_batches

pytestmark = pytest.mark.cluster

MakeMigration = Callable[..., Awaitable[SessionMigration]]
MakeManager = Callable[[str], Awaitable[SessionManager]]


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(masters=3, replicas=1) as local:
        yield local


@pytest.fixture
async def make_manager(namespace: str) -> AsyncIterator[MakeManager]:
    """Managers on any URL, in the test's namespace (activity index always fresh)."""
    made: list[SessionManager] = []

    async def build(url: str) -> SessionManager:
        config = SessionManagerConfig(redis_url=url, namespace=namespace, index_refresh_ms=0)
        manager = await SessionManager(config).connect()
        made.append(manager)
        return manager

    yield build
    for manager in made:
        await manager.close()


@pytest.fixture
async def make_migration(namespace: str) -> AsyncIterator[MakeMigration]:
    """Connected SessionMigration objects between any two URLs, closed after the test."""
    made: list[SessionMigration] = []

    async def build(source_url: str, target_url: str, **overrides: Any) -> SessionMigration:
        values: dict[str, Any] = {"source_url": source_url, "target_url": target_url, "namespace": namespace}
        values.update(overrides)
        migration = await SessionMigration(MigrationConfig(**values)).connect()
        made.append(migration)
        return migration

    yield build
    for migration in made:
        await migration.close()


async def populate(
    manager: SessionManager, cluster: EmbeddedCluster, per_master: int, events: int = 3
) -> list[str]:
    """Sessions whose ids put ``per_master`` of them on every master, with members, events and a checkpoint."""
    ids = cluster.ids_on_every_master(lambda sid: manager.keys.session(sid).meta, per_master)

    async def one(sid: str) -> None:
        await manager.create_session("alice", session_id=sid, metadata={"sid": sid}, ttl=3600)
        await manager.join_session(sid, "bob")
        for j in range(events):
            await manager.emit_event(sid, {"type": "modified", "data": {"j": j}}, "bob")
        await manager.checkpoint(sid, actor="alice")

    for start in range(0, len(ids), 50):
        await asyncio.gather(*(one(sid) for sid in ids[start : start + 50]))
    return ids


def node_url(cluster: EmbeddedCluster, manager: SessionManager, session_id: str) -> str:
    """URL of the master serving the session (all its keys share one slot)."""
    return f"redis://127.0.0.1:{cluster.node_of_key(manager.keys.session(session_id).meta).port}/0"


async def finished(migration: SessionMigration, task_id: str) -> MigrationTask:
    return await asyncio.wait_for(migration.wait(task_id), 60)


async def test_sessions_land_on_every_master_of_a_cluster_exactly_as_the_standalone_source_had_them(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis, make_manager: MakeManager, make_migration: MakeMigration
) -> None:  # fmt: skip
    source = await make_manager(redis_server.url)
    ids = await populate(source, cluster, per_master=3)
    await source.emit_event(ids[0], {"type": "modified"}, "bob", idempotency_key="retry-1")
    migration = await make_migration(redis_server.url, cluster.url, batch_size=4)
    task = await finished(migration, await migration.start_full_migration(validate_after=True))
    assert task.status == "completed", task.error
    assert (task.progress.total_sessions, task.progress.migrated_sessions) == (9, 9)
    assert task.validation is not None and task.validation.ok and task.validation.total_checked == 9
    target = await make_manager(cluster.url)
    assert set(cluster.distribution([target.keys.session(sid).meta for sid in ids]).values()) == {3}
    for sid in ids:
        same_session(
            await raw_session(redis_server.url, source.keys.namespace, sid),
            await raw_session(node_url(cluster, target, sid), target.keys.namespace, sid),
        )
    assert set(await target.list_active_sessions()) == set(ids)
    assert set(await target.get_sessions_by_agent("bob")) == set(ids)
    for sid in ids:
        last = (await source.get_events(sid))[-1].seq
        assert await target.emit_event(sid, {"type": "modified"}, "alice") == last + 1


async def test_sessions_spread_over_every_master_move_to_a_standalone_server_and_a_removed_one_is_reported(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis, make_manager: MakeManager, make_migration: MakeMigration
) -> None:  # fmt: skip
    source = await make_manager(cluster.url)
    ids = await populate(source, cluster, per_master=3)
    await source.complete_session(ids[0], "alice")
    migration = await make_migration(cluster.url, redis_server.url, batch_size=2)
    task = await finished(migration, await migration.start_full_migration(validate_after=True))
    assert task.status == "completed", task.error
    assert (task.progress.total_sessions, task.progress.migrated_sessions) == (9, 9)
    assert task.validation is not None and task.validation.ok and task.validation.total_checked == 9
    for sid in ids:
        same_session(
            await raw_session(node_url(cluster, source, sid), source.keys.namespace, sid),
            await raw_session(redis_server.url, source.keys.namespace, sid),
        )
    target = await make_manager(redis_server.url)
    await target.client.delete(*target.keys.session(ids[4]).all)
    report = await migration.validate_migration(task.task_id)
    assert (report.total_checked, report.failed) == (9, 1)
    assert [(m.session_id, m.problem) for m in report.mismatches] == [(ids[4], "missing_on_target")]


async def test_validating_a_cluster_target_finds_a_session_only_the_target_has(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis, make_manager: MakeManager, make_migration: MakeMigration
) -> None:  # fmt: skip
    source = await make_manager(redis_server.url)
    await populate(source, cluster, per_master=1, events=1)
    migration = await make_migration(redis_server.url, cluster.url)
    task = await finished(migration, await migration.start_full_migration(validate_after=True))
    assert task.validation is not None and task.validation.ok
    target = await make_manager(cluster.url)
    extra = await target.create_session("carol")
    report = await migration.validate_migration()
    assert (report.total_checked, report.failed) == (4, 1)
    assert [(m.session_id, m.problem) for m in report.mismatches] == [(extra, "missing_on_source")]


async def test_a_cancelled_migration_from_a_cluster_resumes_on_the_next_master_and_takes_every_session_once(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis, make_manager: MakeManager, make_migration: MakeMigration
) -> None:  # fmt: skip
    source = await make_manager(cluster.url)
    ids = await populate(source, cluster, per_master=40, events=0)
    migration = await make_migration(cluster.url, redis_server.url, batch_size=1)
    task_id = await migration.start_full_migration(validate_after=False)
    while (status := await migration.get_migration_status(task_id)) is not None:
        if status.progress.processed_sessions >= 45 or status.done:
            break
        await asyncio.sleep(0.005)
    await migration.cancel_migration(task_id)
    cancelled = await finished(migration, task_id)
    assert cancelled.status == "cancelled"
    assert 45 <= cancelled.progress.processed_sessions < 120
    assert cancelled.cursor["node"] >= 1 and not cancelled.cursor["done"]
    await migration.resume_migration(task_id)
    done = await finished(migration, task_id)
    assert done.status == "completed", done.error
    assert done.progress.processed_sessions == done.progress.migrated_sessions == 120
    assert done.progress.unchanged_sessions == 0
    report = await migration.validate_migration(task_id)
    assert report.ok and report.total_checked == len(ids)


async def test_a_killed_cli_migration_from_a_cluster_resumes_from_its_cursor_without_duplicates(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis, make_manager: MakeManager,
    make_migration: MakeMigration, namespace: str,
) -> None:  # fmt: skip
    source = await make_manager(cluster.url)
    ids = await populate(source, cluster, per_master=50, events=2)
    command = [
        sys.executable, "-m", "huddle", "migrate", "--from", cluster.url, "--to", redis_server.url,
        "--namespace", namespace, "--batch-size", "1",
    ]  # fmt: skip
    env = {**os.environ, "HUDDLE_MIGRATION_LEASE_TTL": "1"}
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    observer = await make_migration(cluster.url, redis_server.url, lease_ttl=1)
    task = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tasks = await observer.list_migrations()
            task = tasks[0] if tasks else None
            if task is not None and task.progress.processed_sessions >= 20:
                break
            await asyncio.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        await asyncio.wait_for(process.wait(), 30)
    assert task is not None
    killed = await observer.get_migration_status(task.task_id)
    assert killed is not None and killed.status == "running"
    assert 20 <= killed.progress.processed_sessions < 150
    for _ in range(100):  # the dead process's lease (1 s) must run out first
        try:
            await observer.resume_migration(task.task_id)
            break
        except MigrationTaskBusyError:
            await asyncio.sleep(0.1)
    done = await finished(observer, task.task_id)
    assert done.status == "completed", done.error
    assert done.progress.processed_sessions == done.progress.migrated_sessions == 150
    assert done.progress.migrated_events == sum([len(await source.get_events(sid)) for sid in ids])
    report = await observer.validate_migration(task.task_id)
    assert report.ok and report.total_checked == len(ids)


async def test_the_cli_detects_a_cluster_target_from_a_plain_node_url(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis, make_manager: MakeManager, namespace: str
) -> None:
    source = await make_manager(redis_server.url)
    ids = await populate(source, cluster, per_master=1, events=1)
    node = f"redis://127.0.0.1:{cluster.ports[1]}/0"
    command = [
        sys.executable, "-m", "huddle", "migrate", "--from", redis_server.url, "--to", node,
        "--namespace", namespace, "--validate",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode()
    target = await make_manager(cluster.url)
    for sid in ids:
        assert await target.get_events(sid) == await source.get_events(sid)


async def test_status_listing_and_rollback_of_a_task_work_on_a_cluster_target(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis, make_manager: MakeManager, make_migration: MakeMigration
) -> None:  # fmt: skip
    source = await make_manager(redis_server.url)
    target = await make_manager(cluster.url)
    fresh = await populate(source, cluster, per_master=1, events=1)
    await source.create_session("alice", session_id="shared")
    await source.emit_event("shared", {"type": "modified"}, "alice")
    await target.create_session("carol", session_id="shared")
    migration = await make_migration(redis_server.url, cluster.url, conflict_policy="source-wins")
    task_id = await migration.start_full_migration(validate_after=False)
    await finished(migration, task_id)
    observer = await make_migration(redis_server.url, cluster.url)
    status = await observer.get_migration_status(task_id)
    assert status is not None and status.status == "completed"
    assert (status.progress.migrated_sessions, status.progress.conflicts) == (4, 1)
    assert [task.task_id for task in await observer.list_migrations()] == [task_id]
    assert (await target.get_session("shared")).creator == "alice"
    report = await observer.rollback(task_id)
    assert (report.removed_sessions, report.restored_sessions) == (3, 1)
    assert (await target.get_session("shared")).creator == "carol"
    for sid in fresh:
        assert await target.store.get_session(sid) is None
    assert set(await target.list_active_sessions()) == {"shared"}
    rolled = await observer.get_migration_status(task_id)
    assert rolled is not None and rolled.status == "rolled_back"


async def test_listing_migrations_on_a_cluster_skips_and_forgets_tasks_whose_record_expired(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis, make_manager: MakeManager, make_migration: MakeMigration
) -> None:  # fmt: skip
    source = await make_manager(redis_server.url)
    await source.create_session("alice")
    migration = await make_migration(redis_server.url, cluster.url)
    first = await migration.start_full_migration(validate_after=False)
    await finished(migration, first)
    second = await migration.start_full_migration(validate_after=False)
    await finished(migration, second)
    target = await make_manager(cluster.url)
    keys = migration.target_keys
    assert cluster.keyslot(keys.migration_task(first, "task")) != cluster.keyslot(keys.migration_tasks())
    await target.client.delete(keys.migration_task(second, "task"))  # as if its record had expired
    assert [task.task_id for task in await migration.list_migrations()] == [first]
    assert await target.client.zscore(keys.migration_tasks(), second) is None


async def test_incremental_and_selective_migrations_read_a_cluster_source(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis, make_manager: MakeManager, make_migration: MakeMigration
) -> None:  # fmt: skip
    source = await make_manager(cluster.url)
    ids = await populate(source, cluster, per_master=4, events=1)
    await asyncio.sleep(0.01)
    since = time.time()
    await asyncio.sleep(0.01)
    changed = ids[::3]
    for sid in changed:
        await source.emit_event(sid, {"type": "modified"}, "alice")
    migration = await make_migration(cluster.url, redis_server.url)
    incremental = await finished(migration, await migration.start_incremental_migration(since))
    assert incremental.status == "completed", incremental.error
    assert incremental.progress.migrated_sessions == len(changed)
    assert incremental.validation is not None and incremental.validation.ok
    target = await make_manager(redis_server.url)
    assert sorted(await target.list_active_sessions()) == sorted(changed)
    selective = await finished(migration, await migration.start_selective_migration([ids[1], "nope"]))
    assert (selective.progress.migrated_sessions, selective.progress.unknown_sessions) == (1, 1)


async def test_sessions_move_between_namespaces_of_one_cluster(
    cluster: EmbeddedCluster, make_manager: MakeManager, make_migration: MakeMigration, namespace: str
) -> None:
    source = await make_manager(cluster.url)
    ids = await populate(source, cluster, per_master=2, events=2)
    moved = f"{namespace}x"
    migration = await make_migration(cluster.url, cluster.url, target_namespace=moved, batch_size=3)
    task = await finished(migration, await migration.start_full_migration(validate_after=True))
    assert task.status == "completed", task.error
    assert task.progress.migrated_sessions == 6
    assert task.validation is not None and task.validation.ok and task.validation.total_checked == 6
    config = SessionManagerConfig(redis_url=cluster.url, namespace=moved)
    async with SessionManager(config) as target:
        for sid in ids:
            assert await target.get_events(sid) == await source.get_events(sid)


async def test_a_migration_onto_a_cluster_whose_script_caches_were_flushed_loads_the_scripts_again(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis, make_manager: MakeManager, make_migration: MakeMigration
) -> None:  # fmt: skip
    source = await make_manager(redis_server.url)
    await populate(source, cluster, per_master=1, events=1)
    migration = await make_migration(redis_server.url, cluster.url)
    for node in cluster.masters():
        redis.Redis(port=node.port).script_flush()
    task = await finished(migration, await migration.start_full_migration(validate_after=True))
    assert task.status == "completed", task.error
    assert task.progress.migrated_sessions == 3 and task.progress.failed_sessions == 0
    assert task.validation is not None and task.validation.ok


async def _scan_all(client: Any, keys: KeySpace, cursor: dict[str, Any]) -> tuple[list[str], list[Any]]:
    ids: list[str] = []
    cursors: list[Any] = []
    async for batch, position in full_batches(client, keys, 5, cursor):
        ids += batch
        cursors.append(position)
    return ids, cursors


@pytest.mark.parametrize("changed", ["slot", "run"])
async def test_a_scan_cursor_whose_node_was_resharded_or_replaced_rescans_that_node_and_skips_nothing(
    cluster: EmbeddedCluster, make_manager: MakeManager, changed: str
) -> None:
    manager = await make_manager(cluster.url)
    ids = await populate(manager, cluster, per_master=8, events=0)
    everything, cursors = await _scan_all(manager.client, manager.keys, {})
    assert sorted(everything) == sorted(ids)
    assert [c["node"] for c in cursors][-1] == 3 and cursors[-1]["done"]
    middle = next(c for c in cursors if c["node"] == 1 and c["scan"] != 0)
    assert middle["run"] == redis.Redis(port=cluster.node_of_slot(middle["slot"]).port).info()["run_id"]
    # As if node 1 had been resharded (first slot) or replaced by another process (failover, restart) since.
    stale = {**middle, changed: middle["slot"] + 1 if changed == "slot" else "0" * 40}
    resumed, _ = await _scan_all(manager.client, manager.keys, middle)
    rest, _ = await _scan_all(manager.client, manager.keys, stale)
    on_later_nodes = [sid for sid in ids if cluster.node_of_key(manager.keys.session(sid).meta).port
                      != cluster.node_of_slot(0).port]  # fmt: skip
    assert sorted(rest) == sorted(on_later_nodes)
    assert len(resumed) < len(on_later_nodes)  # unchanged node: the cursor's position holds


async def test_a_full_scan_cursor_of_an_older_task_without_a_node_still_resumes_on_a_standalone_server(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis, make_manager: MakeManager
) -> None:
    manager = await make_manager(redis_server.url)
    ids = await populate(manager, cluster, per_master=10, events=0)
    first = cast(AsyncGenerator[Batch], full_batches(manager.client, manager.keys, 5, {}))
    head, position = await anext(first)
    await first.aclose()
    assert position["node"] == 0 and not position["done"]
    rest, _ = await _scan_all(manager.client, manager.keys, {"scan": position["scan"], "done": False})
    assert sorted(head + rest) == sorted(ids) and len(head + rest) == len(ids)


async def test_a_session_on_a_cluster_is_kept_in_sync_on_a_standalone_server_and_back(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis, make_manager: MakeManager, make_migration: MakeMigration
) -> None:  # fmt: skip
    on_cluster = await make_manager(cluster.url)
    on_server = await make_manager(redis_server.url)
    sid = await on_cluster.create_session("alice")
    outbound = await make_migration(cluster.url, redis_server.url)
    await outbound.setup_cross_instance_sync(sid, "target", "manual")
    for _ in range(3):
        await on_cluster.emit_event(sid, {"type": "modified"}, "alice")
    await outbound.sync_session(sid)
    assert await on_server.get_events(sid) == await on_cluster.get_events(sid)
    back = await on_server.create_session("bob")
    inbound = await make_migration(redis_server.url, cluster.url)
    await inbound.setup_cross_instance_sync(back, "target", "manual")
    await on_server.emit_event(back, {"type": "modified"}, "bob")
    await inbound.sync_session(back)
    assert await on_cluster.get_events(back) == await on_server.get_events(back)


async def test_a_migration_paused_on_a_master_that_then_fails_over_rescans_its_replica_and_misses_nothing(
    redis_server: EmbeddedRedis, make_manager: MakeManager, make_migration: MakeMigration
) -> None:
    with EmbeddedCluster(masters=3, replicas=1, node_timeout_ms=1000) as cluster:
        url = cluster.url
        source = await make_manager(url)
        ids = await populate(source, cluster, per_master=40, events=1)
        await source.close()
        first = await make_migration(url, redis_server.url, batch_size=1)
        task_id = await first.start_full_migration(validate_after=False)
        while (status := await first.get_migration_status(task_id)) is not None:
            if status.progress.processed_sessions >= 50 or status.done:
                break
            await asyncio.sleep(0.005)
        await first.cancel_migration(task_id)
        paused = await finished(first, task_id)
        await first.close()
        assert paused.status == "cancelled" and paused.cursor["node"] in (1, 2)
        already = paused.progress.processed_sessions - 40 * paused.cursor["node"]  # taken from that node
        victim = cluster.node_of_slot(paused.cursor["slot"])
        cluster.kill(victim)
        promoted = await asyncio.to_thread(cluster.wait_for_failover, victim, 30)
        assert promoted.port != victim.port
        resumer = await make_migration(url, redis_server.url, batch_size=1)
        await resumer.resume_migration(task_id)
        done = await finished(resumer, task_id)
        assert done.status == "completed", done.error
        # The promoted replica is another process: its scan started over, so the sessions of that node taken
        # before the pause were rewritten whole (refreshed, never duplicated) — and counted once.
        assert already > 0
        assert done.progress.processed_sessions == done.progress.migrated_sessions == 120
        assert done.progress.failed_sessions == done.progress.unchanged_sessions == 0
        report = await resumer.validate_migration(task_id)
        assert report.ok and report.total_checked == len(ids)
        await resumer.close()


async def test_real_time_sync_tails_a_session_on_a_cluster_onto_a_standalone_server_in_order(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis, make_manager: MakeManager, make_migration: MakeMigration
) -> None:  # fmt: skip
    on_cluster = await make_manager(cluster.url)
    on_server = await make_manager(redis_server.url)
    sid = await on_cluster.create_session("alice")
    sync = await make_migration(cluster.url, redis_server.url, sync_block_ms=50)
    await sync.setup_cross_instance_sync(sid, "target", "real-time")
    for i in range(20):
        await on_cluster.emit_event(sid, {"type": "modified", "data": {"i": i}}, "alice")
    expected = await on_cluster.get_events(sid)
    for _ in range(500):
        if len(await on_server.get_events(sid)) == len(expected):
            break
        await asyncio.sleep(0.02)
    assert await on_server.get_events(sid) == expected
    assert await sync.stop_cross_instance_sync(sid)


async def test_a_cluster_holding_migration_backups_migrates_onward_without_taking_a_session_twice(
    cluster: EmbeddedCluster, redis_server: EmbeddedRedis, make_manager: MakeManager,
    make_migration: MakeMigration, namespace: str,
) -> None:  # fmt: skip
    source = await make_manager(redis_server.url)
    target = await make_manager(cluster.url)
    await source.create_session("alice", session_id="shared")
    await source.emit_event("shared", {"type": "modified"}, "alice")
    await target.create_session("carol", session_id="shared")
    inbound = await make_migration(redis_server.url, cluster.url, conflict_policy="source-wins")
    first = await finished(inbound, await inbound.start_full_migration(backup_first=True))
    backup = target.keys.migration_backup("shared", first.task_id).meta
    assert await target.client.exists(backup)  # a hash whose name also ends in ':meta'
    onward = await make_migration(cluster.url, cluster.url, target_namespace=f"{namespace}x")
    task = await finished(onward, await onward.start_full_migration(validate_after=True))
    assert (task.progress.total_sessions, task.progress.processed_sessions) == (1, 1)
    assert task.validation is not None and task.validation.ok and task.validation.total_checked == 1
