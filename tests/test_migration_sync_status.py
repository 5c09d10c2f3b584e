"""Sync link status is published on the source: every process sees every link; dead owners' links expire."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator

import pytest
import redis.asyncio as aioredis
from migration_support import make_migration, source, target, target_server
from test_migration_sync import synced, until

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.core.keys import KeySpace
from huddle.errors import InvalidIdentifierError
from huddle.migration import SessionMigration

__all__ = ["make_migration", "source", "target", "target_server"]

MakeMigration = Callable[..., Awaitable[SessionMigration]]

OTHER_PROCESS = """
import asyncio, sys
from huddle.migration import MigrationConfig, SessionMigration

async def main() -> None:
    source_url, target_url, namespace, sid = sys.argv[1:5]
    config = MigrationConfig(source_url=source_url, target_url=target_url, namespace=namespace,
                             sync_status_ttl=1.0)
    async with SessionMigration(config) as migration:
        await migration.setup_cross_instance_sync(sid, "target", "real-time")
        print("ready", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.fixture
def other_process(
    redis_server: EmbeddedRedis, target_server: EmbeddedRedis, namespace: str
) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """Start a process that syncs one session in real time (killed at the end of the test)."""
    started: list[subprocess.Popen[str]] = []

    def start(sid: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", OTHER_PROCESS, redis_server.url, target_server.url, namespace, sid],
            stdout=subprocess.PIPE, text=True, env={**os.environ},
        )  # fmt: skip
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


async def test_a_link_set_up_in_another_process_is_listed_with_its_owner(
    source: SessionManager,
    target: SessionManager,
    make_migration: MakeMigration,
    other_process: Callable[[str], subprocess.Popen[str]],
) -> None:
    sid = await source.create_session("alice")
    proc = other_process(sid)
    migration = await make_migration()
    assert migration.list_cross_instance_sessions() == []  # this process's live view
    [link] = await migration.fetch_cross_instance_sessions()
    assert link.session_id == sid and link.sync_mode == "real-time" and link.status == "syncing"
    assert link.owner is not None and f":{proc.pid}:" in link.owner
    assert link.heartbeat_at is not None and link.last_synced_seq == 1
    for _ in range(5):
        await source.emit_event(sid, {"type": "modified"}, "alice")
    await until(lambda: synced(source, target, sid))

    async def published() -> bool:
        found = await migration.fetch_cross_instance_status(sid)
        return found is not None and found.last_synced_seq == 6 and found.events_applied >= 5

    await until(published)


async def test_the_links_of_a_killed_process_disappear_when_their_heartbeat_expires(
    source: SessionManager,
    make_migration: MakeMigration,
    other_process: Callable[[str], subprocess.Popen[str]],
    redis_server: EmbeddedRedis,
    namespace: str,
) -> None:
    sid = await source.create_session("alice")
    proc = other_process(sid)
    migration = await make_migration()
    assert [link.session_id for link in await migration.fetch_cross_instance_sessions()] == [sid]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    async def gone() -> bool:
        return await migration.fetch_cross_instance_sessions() == []

    await until(gone)
    keys = KeySpace(namespace)
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:  # the reader also removed the dead member from the registry
        assert await client.zcard(keys.sync_index_for(sid)) == 0
    finally:
        await client.aclose()


async def test_the_published_status_catches_up_with_the_live_status_after_many_syncs(
    source: SessionManager, make_migration: MakeMigration
) -> None:
    sid = await source.create_session("alice")
    migration = await make_migration()
    await migration.setup_cross_instance_sync(sid, "target", "manual")
    for _ in range(30):
        await source.emit_event(sid, {"type": "modified"}, "alice")
        await migration.sync_session(sid)
    live = migration.get_cross_instance_status(sid)
    last_seq = (await source.get_session(sid)).last_seq
    assert live is not None and (live.syncs, live.last_synced_seq) == (31, last_seq)

    async def caught_up() -> bool:
        stored = await migration.fetch_cross_instance_status(sid)
        assert stored is not None
        return (stored.syncs, stored.events_applied, stored.last_synced_seq) == (
            31, live.events_applied, last_seq,
        )  # fmt: skip

    await until(caught_up)
    stored = await migration.fetch_cross_instance_status(sid)
    assert stored is not None and stored.owner == live.owner and stored.status == "idle"


async def test_stopping_a_link_removes_its_published_status(
    source: SessionManager, make_migration: MakeMigration
) -> None:
    first = await source.create_session("alice")
    second = await source.create_session("alice")
    migration = await make_migration()
    await migration.setup_cross_instance_sync(first, "target", "real-time")
    await migration.setup_cross_instance_sync(second, "target", "periodic")
    listed = await migration.fetch_cross_instance_sessions()
    assert sorted((link.session_id, link.sync_mode) for link in listed) == sorted(
        [(first, "real-time"), (second, "periodic")]
    )
    assert await migration.stop_cross_instance_sync(first)
    assert [link.session_id for link in await migration.fetch_cross_instance_sessions()] == [second]
    assert await migration.fetch_cross_instance_status(first) is None


async def test_closing_removes_every_published_link_of_the_process(
    source: SessionManager, make_migration: MakeMigration
) -> None:
    sids = [await source.create_session("alice") for _ in range(3)]
    migration = await make_migration()
    for sid in sids:
        await migration.setup_cross_instance_sync(sid, "target", "real-time")
    observer = await make_migration()
    assert len(await observer.fetch_cross_instance_sessions()) == 3
    await migration.close()
    assert await observer.fetch_cross_instance_sessions() == []


async def test_fetch_status_filters_by_instance_and_rejects_bad_ids(
    source: SessionManager, make_migration: MakeMigration, target_server: EmbeddedRedis
) -> None:
    sid = await source.create_session("alice")
    migration = await make_migration(instances={"dr": target_server.url})
    await migration.setup_cross_instance_sync(sid, "dr", "manual")
    found = await migration.fetch_cross_instance_status(sid, "dr")
    assert found is not None and found.target_instance == "dr" and found.target == target_server.url
    assert await migration.fetch_cross_instance_status(sid, "target") is None
    assert await migration.fetch_cross_instance_status("no-such-session") is None
    with pytest.raises(InvalidIdentifierError):
        await migration.fetch_cross_instance_sessions("bad id{")


async def test_many_real_time_links_share_one_blocked_connection(
    source: SessionManager, target: SessionManager, make_migration: MakeMigration, redis_server: EmbeddedRedis
) -> None:
    sids = [await source.create_session("alice") for _ in range(80)]  # more links than the pool (64)
    migration = await make_migration()
    for sid in sids:
        await migration.setup_cross_instance_sync(sid, "target", "real-time")
    await asyncio.gather(*(source.emit_event(sid, {"type": "modified"}, "alice") for sid in sids))
    for sid in sids:
        await until(lambda sid=sid: synced(source, target, sid))  # type: ignore[misc]
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:

        async def one_reader() -> bool:
            blocked = [c for c in await client.client_list() if c["cmd"] == "xread" and "b" in c["flags"]]
            return len(blocked) == 1

        await until(one_reader)
    finally:
        await client.aclose()
    assert all(link.status == "syncing" for link in migration.list_cross_instance_sessions())


async def test_an_unreachable_target_does_not_hold_back_the_other_real_time_links(
    source: SessionManager, target: SessionManager, make_migration: MakeMigration
) -> None:
    async with EmbeddedRedis(appendonly=True) as dr_server:
        dr_config = SessionManagerConfig(redis_url=dr_server.url, namespace=source.keys.namespace)
        healthy, stranded = await source.create_session("alice"), await source.create_session("alice")
        migration = await make_migration(
            instances={"dr": dr_server.url}, retry_attempts=0, socket_timeout=1.0
        )
        await migration.setup_cross_instance_sync(healthy, "target", "real-time")
        await migration.setup_cross_instance_sync(stranded, "dr", "real-time")
        dr_server.stop(kill=True, cleanup=False)
        for _ in range(10):
            await source.emit_event(healthy, {"type": "modified"}, "alice")
            await source.emit_event(stranded, {"type": "modified"}, "alice")
        await until(lambda: synced(source, target, healthy))

        async def retrying() -> bool:
            link = migration.get_cross_instance_status(stranded, "dr")
            return link is not None and link.status == "retrying" and link.errors > 0

        await until(retrying)
        dr_server.start()
        async with SessionManager(dr_config) as dr:
            await until(lambda: synced(source, dr, stranded), seconds=30)
            assert [e.seq for e in await dr.get_events(stranded)] == [
                e.seq for e in await source.get_events(stranded)
            ]
        link = migration.get_cross_instance_status(stranded, "dr")
        assert link is not None and link.status == "syncing"
