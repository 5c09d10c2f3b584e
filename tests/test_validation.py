"""SessionConfigValidator: schema, consistency, session options, performance and the default test server."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from huddle import ConfigError, EmbeddedRedis, SessionConfigValidator, SessionManager, SessionManagerConfig
from huddle.backend.embedded import free_port

MakeConfig = Callable[..., SessionManagerConfig]
MakeManager = Callable[..., Awaitable[SessionManager]]
MODIFIED = {
    "type": "modified",
    "change_info": {"element_type": "function", "entity_ids": ["f1"], "operation": "modified"},
}


def field_errors(result: Any) -> dict[str | None, str]:
    return {issue.field: issue.message for issue in result.errors}


async def test_out_of_range_values_are_errors_naming_the_field_and_the_range() -> None:
    result = await SessionConfigValidator().validate_config(
        {"default_ttl": 30, "checkpoint_interval": 0, "max_events_per_session": 5, "grace_ttl": 4000}
    )
    assert not result.valid
    errors = field_errors(result)
    assert set(errors) == {"default_ttl", "checkpoint_interval", "max_events_per_session", "grace_ttl"}
    assert (
        ">= 60" in errors["default_ttl"]
        and "<= 604800" in errors["default_ttl"]
        and "got 30" in errors["default_ttl"]
    )
    assert ">= 1" in errors["checkpoint_interval"] and "<= 1000" in errors["checkpoint_interval"]
    assert ">= 10" in errors["max_events_per_session"] and "<= 100000" in errors["max_events_per_session"]
    assert "<= 3600" in errors["grace_ttl"] and "got 4000" in errors["grace_ttl"]


async def test_wrong_types_and_unknown_keys_are_errors() -> None:
    result = await SessionConfigValidator().validate_config({"default_ttl": "an hour", "colour": "blue"})
    errors = field_errors(result)
    assert "integer" in errors["default_ttl"]
    assert errors["colour"] == "colour is not a setting huddle knows"


async def test_a_non_mapping_config_is_reported_not_raised() -> None:
    result = await SessionConfigValidator().validate_config(42)
    assert not result.valid
    assert result.errors[0].code == "not_a_mapping"


async def test_the_spec_example_config_with_camel_case_names_is_valid() -> None:
    spec_config = {
        "redis": {"host": "localhost", "port": 6379, "password": "your-password"},
        "defaultTTL": 3600,
        "checkpointInterval": 10,
        "maxEventsPerSession": 1000,
        "graceTTL": 300,
        "enableFailureSnapshots": True,
    }
    result = await SessionConfigValidator().validate_config(spec_config)
    assert result.valid, result.errors


async def test_a_checkpoint_interval_longer_than_the_log_is_a_warning() -> None:
    result = await SessionConfigValidator().validate_config(
        {"checkpoint_interval": 500, "max_events_per_session": 100}
    )
    assert result.valid
    assert [w.field for w in result.warnings] == ["checkpoint_interval"]


async def test_a_pool_smaller_than_the_expected_concurrency_is_a_warning() -> None:
    validator = SessionConfigValidator(expected_concurrency=200)
    result = await validator.validate_config({"max_connections": 64})
    assert "pool_smaller_than_concurrency" in result.codes()


async def test_missing_hiredis_is_recommended_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hiredis", None)
    result = await SessionConfigValidator().validate_config({})
    (rec,) = [r for r in result.recommendations if r.code == "install_hiredis"]
    assert "C" in rec.reason


async def test_installed_hiredis_is_not_recommended() -> None:
    result = await SessionConfigValidator().validate_config({})
    assert "install_hiredis" not in result.codes()


async def test_checkpoint_interval_is_compared_with_the_measured_event_rate(
    make_manager: MakeManager, make_config: MakeConfig
) -> None:
    manager = await make_manager()
    for _ in range(3):
        sid = await manager.create_session("a1")
        for _ in range(20):
            await manager.emit_event(sid, MODIFIED, "a1")
    await manager.perform_maintenance()
    validator = SessionConfigValidator(manager.client)
    result = await validator.validate_config(make_config(checkpoint_interval=2))
    (check,) = [c for c in result.checks if c.name == "event rate"]
    assert check.status == "pass" and "over 3 session(s)" in check.detail
    assert "checkpoints_too_frequent" in result.codes()


async def test_session_options_are_checked_like_create_session_checks_them() -> None:
    validator = SessionConfigValidator()
    assert validator.validate_session_options({"ttl": 600, "metadata": {"feature": "auth"}}).valid
    bad = validator.validate_session_options(
        {"ttl": 0, "metadata": {"x": object()}, "initialState": "has space", "colour": 1}
    )
    assert {issue.field for issue in bad.errors} == {"ttl", "metadata", "initial_state", "colour"}


async def test_an_unknown_environment_name_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="production"):
        await SessionConfigValidator().validate_environment("prod")


async def test_development_accepts_the_local_test_server(make_config: MakeConfig) -> None:
    result = await SessionConfigValidator().validate_environment("development", make_config())
    assert result.valid, result.errors
    assert {"auth_required", "persistence_off"} <= result.codes()
    assert all(r.priority == "low" for r in result.recommendations if r.code == "auth_required")


async def test_staging_warns_where_production_fails(make_config: MakeConfig) -> None:
    result = await SessionConfigValidator().validate_environment("staging", make_config())
    assert result.valid
    assert {"auth_required", "persistence_off", "server_allows_anonymous"} <= {
        w.code for w in result.warnings
    }


async def test_production_rejects_an_open_server_without_persistence(make_config: MakeConfig) -> None:
    result = await SessionConfigValidator().validate_environment("production", make_config())
    assert not result.valid
    assert {e.code for e in result.errors} == {"auth_required", "persistence_off", "server_allows_anonymous"}
    assert "tls_required" not in result.codes()  # loopback needs no TLS


async def test_production_requires_tls_to_a_non_loopback_host() -> None:
    config = SessionManagerConfig.model_validate(
        {"host": "203.0.113.7", "password": "pw", "connect_timeout": 0.2, "cluster": False}
    )
    result = await SessionConfigValidator().validate_environment("production", config)
    assert "tls_required" in {e.code for e in result.errors}
    assert "unreachable" in {e.code for e in result.errors}


async def test_an_unreachable_server_is_a_connection_error_and_live_checks_are_skipped() -> None:
    settings = SessionManagerConfig.model_validate({"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    result = await SessionConfigValidator().validate_redis_connection(settings)
    assert [e.code for e in result.errors] == ["unreachable"]
    assert [c.status for c in result.checks if c.name == "connection"] == ["fail"]


async def test_the_connection_check_reports_latency_user_and_version(make_config: MakeConfig) -> None:
    result = await SessionConfigValidator().validate_redis_connection(make_config())
    assert result.valid
    (check,) = [c for c in result.checks if c.name == "connection"]
    assert check.status == "pass" and " ms as default" in check.detail


async def test_credentials_in_a_config_file_are_flagged(tmp_path: Path, make_config: MakeConfig) -> None:
    file = tmp_path / "huddle.toml"
    file.write_text('[huddle]\nredis_url = "redis://:s3cret@127.0.0.1:6379/0"\n')
    file.chmod(0o644)
    validator = SessionConfigValidator(config_file=file)
    result = await validator.validate_environment("production", make_config())
    (error,) = [e for e in result.errors if e.code == "credentials_in_file"]
    assert "redis_url" in error.message and "s3cret" not in error.message
    assert "credentials_file_readable" in {w.code for w in result.warnings}


async def test_a_report_holds_validation_environment_server_facts_and_ranked_recommendations(
    make_config: MakeConfig,
) -> None:
    report = await SessionConfigValidator().generate_configuration_report(
        make_config(), environment="production"
    )
    assert not report.valid
    assert report.validation.valid
    assert not report.environment_validation.valid
    assert report.server is not None and report.server.version is not None
    priorities = [rec.priority for rec in report.recommendations]
    assert priorities == sorted(priorities, key=["high", "medium", "low"].index)


async def test_persistence_on_passes_production_persistence(tmp_path: Path) -> None:
    async with EmbeddedRedis(appendonly=True) as server:
        config = SessionManagerConfig.model_validate({"redis_url": server.url})
        result = await SessionConfigValidator().validate_environment("production", config)
    assert "persistence_off" not in result.codes()
    assert [c.status for c in result.checks if c.name == "persistence"] == ["pass"]
