"""``huddle config validate|report`` run for real against the test server; exit codes say valid or not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from huddle import EmbeddedRedis


def huddle(server: EmbeddedRedis, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HUDDLE_REDIS_URL": server.url, "HUDDLE_CLUSTER": "false", "COLUMNS": "200"}
    env.pop("HUDDLE_ENV", None)
    return subprocess.run(
        [sys.executable, "-m", "huddle", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_validate_passes_the_test_server_for_development(redis_server: EmbeddedRedis) -> None:
    result = huddle(redis_server, "config", "validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid for development" in result.stdout


def test_validate_for_production_exits_one_with_the_errors_as_json(redis_server: EmbeddedRedis) -> None:
    result = huddle(redis_server, "config", "validate", "--env", "production", "--json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["valid"] is False
    codes = {error["code"] for error in document["environment_validation"]["errors"]}
    assert codes == {"auth_required", "persistence_off", "server_allows_anonymous"}


def test_validate_names_the_bad_fields_of_a_settings_file(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    file = tmp_path / "huddle.toml"
    file.write_text(
        f'[huddle]\nredis_url = "{redis_server.url}"\ndefault_ttl = 5\ncheckpoint_interval = 5000\n'
    )
    result = huddle(redis_server, "config", "validate", "--file", str(file), "--json")
    assert result.returncode == 1
    fields = {error["field"] for error in json.loads(result.stdout)["config"]["errors"]}
    assert fields == {"default_ttl", "checkpoint_interval"}


def test_report_lists_server_facts_and_exits_one_for_production(redis_server: EmbeddedRedis) -> None:
    result = huddle(redis_server, "config", "report", "--env", "production", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["environment"] == "production"
    assert report["server"]["version"] == redis_server.version()
    assert report["validation"]["valid"] is True


def test_report_renders_tables_for_people(redis_server: EmbeddedRedis) -> None:
    result = huddle(redis_server, "config", "report", "--env", "development")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration report" in result.stdout and "Checks" in result.stdout


def test_an_unknown_environment_is_one_line_and_exit_one(redis_server: EmbeddedRedis) -> None:
    result = huddle(redis_server, "config", "validate", "--env", "prod")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "invalid_config" in result.stderr
