"""SessionConfigValidator against real servers configured each way: auth, ACL, TLS, eviction, exposure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from huddle import EmbeddedRedis, SessionConfigValidator, SessionManager, SessionManagerConfig
from huddle.backend.topology import EmbeddedTlsRedis, make_tls_files, tls_supported

PASSWORD = "correct-horse"
DOCUMENTED_ACL = [
    "on", f">{PASSWORD}", "resetkeys", "~huddle:*", "resetchannels", "&huddle:*",
    "nocommands", "+@all", "-@dangerous", "+info", "+client|setname", "+acl|whoami",
]  # fmt: skip
LIMITED_USER = "huddle-app"


def admin(server: EmbeddedRedis, **kwargs: Any) -> redis.Redis:
    return redis.Redis(port=server.port, decode_responses=True, **kwargs)


def config_for(server: EmbeddedRedis, **values: Any) -> SessionManagerConfig:
    return SessionManagerConfig.model_validate({"redis_url": server.url, "cluster": False, **values})


@pytest.fixture(scope="module")
def secured() -> Iterator[EmbeddedRedis]:
    """requirepass on the default user, plus an ACL user limited to huddle's keys without CONFIG or ACL GETUSER."""
    with EmbeddedRedis() as server:
        client = admin(server)
        client.execute_command(
            "ACL", "SETUSER", LIMITED_USER, "on", f">{PASSWORD}", "~huddle:*", "&*",
            "+@read", "+@write", "+@stream", "+@hash", "+@scripting", "+ping", "+info", "+acl|whoami",
            "+client|setname",
        )  # fmt: skip
        client.execute_command(
            "ACL", "SETUSER", "no-setname", "on", f">{PASSWORD}", "~huddle:*", "+@read", "+ping"
        )
        client.config_set("requirepass", PASSWORD)
        yield server


def unknown_checks(result: Any) -> dict[str, str]:
    return {check.name: check.detail for check in result.checks if check.status == "unknown"}


async def test_requirepass_satisfies_production_authentication(secured: EmbeddedRedis) -> None:
    result = await SessionConfigValidator().validate_environment(
        "production", config_for(secured, password=PASSWORD)
    )
    assert "auth_required" not in result.codes()
    assert "server_allows_anonymous" not in result.codes()
    assert [c.status for c in result.checks if c.name == "server authentication"] == ["pass"]


async def test_the_default_user_with_all_permissions_is_flagged(secured: EmbeddedRedis) -> None:
    result = await SessionConfigValidator().validate_environment(
        "production", config_for(secured, password=PASSWORD)
    )
    (warning,) = [w for w in result.warnings if w.code == "default_user_all_permissions"]
    assert "+@all" in warning.message


async def test_a_missing_password_fails_the_connection_check(secured: EmbeddedRedis) -> None:
    result = await SessionConfigValidator().validate_redis_connection(config_for(secured))
    assert [e.code for e in result.errors] == ["auth_failed"]


async def test_a_wrong_password_fails_the_connection_check(secured: EmbeddedRedis) -> None:
    result = await SessionConfigValidator().validate_redis_connection(config_for(secured, password="nope"))
    assert [e.code for e in result.errors] == ["auth_failed"]
    assert "nope" not in result.errors[0].message


async def test_an_acl_user_without_config_rights_gets_could_not_check_not_a_guess(
    secured: EmbeddedRedis,
) -> None:
    config = config_for(secured, username=LIMITED_USER, password=PASSWORD)
    result = await SessionConfigValidator().validate_environment("production", config)
    unknown = unknown_checks(result)
    assert f"CONFIG GET save is not permitted for user {LIMITED_USER}" in unknown["persistence"]
    assert "not permitted" in unknown["network exposure"]
    assert "ACL GETUSER default is not permitted" in unknown["server authentication"]
    assert "persistence_unknown" in result.codes()
    assert "persistence_off" not in result.codes()
    assert [c.status for c in result.checks if c.name == "redis version"] == ["pass"]  # INFO is permitted
    assert [c.status for c in result.checks if c.name == "authentication"] == ["pass"]


async def test_a_user_that_may_not_name_its_connection_is_told_what_is_missing(
    secured: EmbeddedRedis,
) -> None:
    config = config_for(secured, username="no-setname", password=PASSWORD)
    result = await SessionConfigValidator().validate_redis_connection(config)
    (error,) = result.errors
    assert (
        error.code == "not_permitted" and "'client" in error.message
    )  # 'client|setname' (7.x), 'client' (6.2)


async def test_the_documented_acl_runs_a_session_and_validates_cleanly(secured: EmbeddedRedis) -> None:
    admin(secured, password=PASSWORD).execute_command("ACL", "SETUSER", "documented", *DOCUMENTED_ACL)
    config = config_for(secured, username="documented", password=PASSWORD, namespace="huddle")
    async with SessionManager(config) as manager:
        sid = await manager.create_session("a1")
        await manager.emit_event(sid, {"type": "modified", "data": {"n": 1}}, "a1")
        await manager.checkpoint(sid)
        assert [e.seq for e in await manager.get_events(sid)] == [1, 2, 3]
    result = await SessionConfigValidator().validate_redis_connection(config)
    assert result.valid, result.errors


async def test_allkeys_lru_is_a_production_error() -> None:
    async with EmbeddedRedis(extra_args=["--maxmemory-policy", "allkeys-lru"]) as server:
        result = await SessionConfigValidator().validate_environment("production", config_for(server))
    (error,) = [e for e in result.errors if e.code == "eviction_unsafe"]
    assert "allkeys-lru" in error.message and "noeviction" in error.message


async def test_volatile_lru_is_a_warning_that_explains_which_keys_go() -> None:
    async with EmbeddedRedis(extra_args=["--maxmemory-policy", "volatile-lru"]) as server:
        result = await SessionConfigValidator().validate_environment("production", config_for(server))
    (warning,) = [w for w in result.warnings if w.code == "eviction_volatile"]
    assert "every huddle session key" in warning.message and "indexes" in warning.message
    assert "eviction_unsafe" not in result.codes()


async def test_persistence_off_is_a_production_error_and_a_staging_warning() -> None:
    async with EmbeddedRedis(appendonly=False) as server:
        production = await SessionConfigValidator().validate_environment("production", config_for(server))
        staging = await SessionConfigValidator().validate_environment("staging", config_for(server))
    assert "persistence_off" in {e.code for e in production.errors}
    assert "persistence_off" in {w.code for w in staging.warnings}


async def test_protected_mode_off_on_a_public_bind_is_flagged() -> None:
    async with EmbeddedRedis(extra_args=["--bind", "0.0.0.0"]) as server:
        client = admin(server)
        client.config_set("requirepass", PASSWORD)
        config = config_for(server, password=PASSWORD)
        result = await SessionConfigValidator().validate_environment("production", config)
    (warning,) = [w for w in result.warnings if w.code == "protected_mode_off"]
    assert "0.0.0.0" in warning.message


needs_tls = pytest.mark.skipif(
    not tls_supported(), reason="this redis-server was built without TLS (install Debian's redis-server 7)"
)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTlsRedis]:
    if not tls_supported():
        pytest.skip("this redis-server was built without TLS (install Debian's redis-server 7)")
    files = make_tls_files(tmp_path_factory.mktemp("tls"))
    with EmbeddedTlsRedis(files) as server:
        yield server


@pytest.mark.tls
@needs_tls
async def test_tls_with_the_generated_ca_passes_the_tls_check(tls_server: EmbeddedTlsRedis) -> None:
    config = SessionManagerConfig.model_validate(
        {"redis_url": tls_server.tls_url, "ssl_ca_certs": tls_server.tls.ca_cert, "cluster": False}
    )
    connection = await SessionConfigValidator().validate_redis_connection(config)
    assert connection.valid, connection.errors
    result = await SessionConfigValidator().validate_environment("production", config)
    assert [c.status for c in result.checks if c.name == "tls"] == ["pass"]
    assert "tls_required" not in result.codes()


@pytest.mark.tls
@needs_tls
async def test_tls_with_an_untrusted_ca_reports_the_handshake(
    tls_server: EmbeddedTlsRedis, tmp_path: Path
) -> None:
    stranger = make_tls_files(tmp_path / "other")
    config = SessionManagerConfig.model_validate(
        {"redis_url": tls_server.tls_url, "ssl_ca_certs": stranger.ca_cert, "cluster": False}
    )
    result = await SessionConfigValidator().validate_redis_connection(config)
    (error,) = result.errors
    assert error.code == "unreachable" and "certificate" in error.message.lower()
