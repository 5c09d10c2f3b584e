"""Settings: pydantic-settings models read from arguments, ``HUDDLE_*`` environment variables or TOML."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    SerializationInfo,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError

_NAME = r"^[A-Za-z0-9_.\-]{1,64}$"
_QUERY_SECRET = re.compile(r"((?:^|&)[^=&]*password=)[^&]*", re.IGNORECASE)


def mask_url(url: str | None) -> str | None:
    """Return ``url`` with any password (``user:password@`` or a ``?password=`` parameter) replaced by ``***``."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "***"
    # redis-py also reads password= / sentinel_password= from the query string
    query = _QUERY_SECRET.sub(r"\1***", parts.query)
    if password is None and query == parts.query:
        return url
    masked = url
    if password is not None:
        host = parts.netloc.rpartition("@")[2]  # keeps every host:port of a sentinel URL
        masked = masked.replace(parts.netloc, f"{parts.username or ''}:***@{host}", 1)
    return masked.replace(f"?{parts.query}", f"?{query}", 1)


def config_error_from(exc: ValidationError, model: str) -> ConfigError:
    """Turn a pydantic ``ValidationError`` into one readable ``ConfigError`` naming every bad field."""
    problems = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "(settings)"
        problems.append(f"{field}: {err['msg']}")
    return ConfigError(f"invalid {model}: " + "; ".join(problems), problems=problems)


class HuddleSettings(BaseSettings):
    """Shared behaviour: typed ``ConfigError`` on bad values, secrets masked in ``repr``, TOML loading."""

    model_config = SettingsConfigDict(env_prefix="HUDDLE_", extra="forbid", frozen=True)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise config_error_from(exc, type(self).__name__) from None

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name is not None and name.endswith("url") and isinstance(value, str):
                yield name, mask_url(value)
            else:
                yield name, value

    @classmethod
    def from_toml(cls, path: str | Path, section: str | None = "huddle") -> Self:
        """Load settings from a TOML file (the ``[huddle]`` table by default); env vars fill the rest."""
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read settings from {path}: {exc}") from exc
        if section is not None:
            data = data.get(section, {})
        return cls(**data)


class RedisSettings(HuddleSettings):
    """Where Redis is and how to talk to it.

    Dumps (``model_dump``, ``model_dump_json``) and ``repr`` mask the password inside ``redis_url`` (and
    ``password``/``sentinel_password`` are ``SecretStr``): a logged or returned config never shows a secret.
    The attribute itself keeps the real URL, which is what the connection code reads."""

    redis_url: str | None = Field(
        default=None, description="redis:// or rediss:// URL; overrides host/port/db/username/password/ssl"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=6379, ge=1, le=65535)
    db: int = Field(default=0, ge=0)
    username: str | None = None
    password: SecretStr | None = None
    ssl: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    socket_timeout: float = Field(default=5.0, gt=0, description="seconds to wait for a reply")
    connect_timeout: float = Field(default=5.0, gt=0)
    retry_attempts: int = Field(default=3, ge=0, le=100, description="retries after a connection error")
    retry_backoff_base: float = Field(default=0.05, gt=0)
    retry_backoff_cap: float = Field(default=1.0, gt=0)
    max_connections: int = Field(default=64, ge=1, description="connection pool size per client")
    pool_timeout: float = Field(
        default=10.0, gt=0, description="seconds to wait for a free pooled connection"
    )
    cluster: bool | None = Field(
        default=None, description="Redis Cluster: true, false, or None to ask the server (INFO cluster)"
    )
    sentinels: str | None = Field(
        default=None, description="comma-separated host:port of Sentinels; set with sentinel_service"
    )
    sentinel_service: str | None = Field(default=None, description="the master's name in Sentinel")
    sentinel_username: str | None = None
    sentinel_password: SecretStr | None = None
    ssl_check_hostname: bool = Field(
        default=True, description="TLS: check the server certificate's host name"
    )
    auto_pipeline: bool = Field(
        default=True,
        description="commands issued in the same event-loop tick share one round trip (cluster: script calls, per node)",
    )

    @field_validator("redis_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme
        if scheme not in ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel"):
            raise ValueError(
                "scheme must be redis://, rediss://, unix://, redis+sentinel:// or rediss+sentinel://, "
                f"not {scheme or 'missing'!r}"
            )
        return value

    @field_serializer("redis_url")
    def _dump_url(self, value: str | None, _info: SerializationInfo) -> str | None:
        return mask_url(value)

    @model_validator(mode="after")
    def _check_sentinel(self) -> Self:
        if bool(self.sentinels) != bool(self.sentinel_service):
            raise ValueError("sentinels and sentinel_service must be set together")
        if self.sentinels and self.cluster:
            raise ValueError("cluster and sentinels exclude each other")
        return self

    def describe_target(self) -> str:
        """Where this points, safe to print (no password)."""
        if self.redis_url:
            return mask_url(self.redis_url) or ""
        scheme = "rediss" if self.ssl else "redis"
        if self.sentinels:
            return f"{scheme}+sentinel://{self.sentinels}/{self.sentinel_service}/{self.db}"
        return f"{scheme}://{self.host}:{self.port}/{self.db}"


class SessionManagerConfig(RedisSettings):
    """Everything ``SessionManager`` needs; each field can come from ``HUDDLE_<FIELD>``."""

    namespace: str = Field(default="huddle", pattern=_NAME, description="prefix of every key")
    default_ttl: int = Field(
        default=3600,
        ge=60,
        le=7 * 86400,
        description="seconds a session lives after its last activity (60 s..7 days)",
    )
    grace_ttl: int = Field(
        default=300, ge=60, le=3600, description="seconds a session lives after its last leave or completion"
    )
    checkpoint_interval: int = Field(default=10, ge=1, le=1000, description="auto-checkpoint every N events")
    enable_auto_checkpoint: bool = True
    max_events_per_session: int = Field(
        default=1000, ge=10, le=100_000, description="events kept in a session's log (older ones are trimmed)"
    )
    max_checkpoints_per_session: int = Field(default=100, ge=1)
    enable_failure_snapshots: bool = True
    failure_states: tuple[str, ...] = Field(
        default=("broken",), description="entering one of these states takes a failure snapshot"
    )
    failure_snapshot_ttl: int = Field(
        default=7 * 86400, ge=1, description="seconds a failure snapshot is kept"
    )
    failure_snapshot_events: int = Field(default=50, ge=0, le=10_000)
    initial_state: str = Field(default="working", pattern=_NAME)
    global_channel: str = Field(default="global", pattern=_NAME)
    session_channel_prefix: str = Field(default="session", pattern=_NAME)
    max_event_bytes: int = Field(default=64 * 1024, ge=256, le=64 * 1024 * 1024)
    index_shards: int = Field(default=16, ge=1, le=1024)
    index_refresh_ms: int = Field(default=1000, ge=0, description="how fresh the activity index is kept")
    subscribe_block_ms: int = Field(default=1000, ge=10, le=60_000)
    max_local_sessions: int = Field(
        default=100_000,
        ge=1,
        description="sessions a manager remembers its agents joined (checkpointed at shutdown); "
        "beyond it the least recently joined are forgotten",
    )
    replica_wait_timeout_ms: int = Field(
        default=1000, ge=1, le=60_000, description="how long emit_event(min_replicas=...) waits (WAIT)"
    )

    @model_validator(mode="after")
    def _check_states(self) -> Self:
        for state in self.failure_states:
            if re.fullmatch(_NAME, state) is None:
                raise ValueError(f"failure_states: {state!r} is not a valid state name")
        return self
