"""Settings: ranges enforced at construction, env variables, secrets never printed."""

from __future__ import annotations

import pytest

from huddle import ConfigError, SessionManagerConfig


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("default_ttl", 0),
        ("default_ttl", -5),
        ("grace_ttl", 0),
        ("checkpoint_interval", -1),
        ("max_events_per_session", 0),
        ("port", 70000),
        ("namespace", "has space"),
        ("redis_url", "http://example.com"),
        ("max_event_bytes", 10),
    ],
)
def test_out_of_range_settings_raise_config_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        SessionManagerConfig(**{field: value})  # type: ignore[arg-type]
    assert field in str(info.value)


def test_unknown_settings_are_rejected() -> None:
    with pytest.raises(ConfigError, match="default_tll"):
        SessionManagerConfig(default_tll=60)  # type: ignore[call-arg]


def test_environment_variables_fill_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUDDLE_DEFAULT_TTL", "900")
    monkeypatch.setenv("HUDDLE_NAMESPACE", "tenant-a")
    config = SessionManagerConfig()
    assert (config.default_ttl, config.namespace) == (900, "tenant-a")


def test_passwords_never_appear_in_repr() -> None:
    config = SessionManagerConfig(redis_url="redis://user:s3cret@example.com:6380/1", password="hunter2")
    shown = repr(config) + str(config)
    assert "s3cret" not in shown and "hunter2" not in shown
    assert "user:***@example.com:6380" in shown
    assert config.describe_target() == "redis://user:***@example.com:6380/1"


def test_settings_load_from_toml(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "huddle.toml"  # type: ignore[operator]
    path.write_text("[huddle]\ndefault_ttl = 120\ncheckpoint_interval = 25\n")
    config = SessionManagerConfig.from_toml(path)
    assert (config.default_ttl, config.checkpoint_interval) == (120, 25)
