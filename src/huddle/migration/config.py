"""MigrationConfig: where sessions come from and go to, and how a migration behaves."""

from __future__ import annotations

from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from ..config import HuddleSettings, RedisSettings

ConflictPolicy = Literal["source-wins", "target-wins", "newest-wins", "merge", "fail"]
CONFLICT_POLICIES: tuple[str, ...] = ("source-wins", "target-wins", "newest-wins", "merge", "fail")

_NAME = r"^[A-Za-z0-9_.\-]{1,64}$"


def _check_url(value: str) -> str:
    scheme = urlsplit(value).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"scheme must be redis://, rediss:// or unix://, not {scheme or 'missing'!r}")
    return value


class MigrationConfig(HuddleSettings):
    """Settings of ``SessionMigration``; each field can come from ``HUDDLE_MIGRATION_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="HUDDLE_MIGRATION_", extra="forbid", frozen=True)

    source_url: str = Field(description="redis:// URL of the Redis the sessions are read from")
    target_url: str = Field(description="redis:// URL of the Redis the sessions are written to")
    namespace: str = Field(default="huddle", pattern=_NAME, description="namespace of the source sessions")
    target_namespace: str | None = Field(
        default=None, pattern=_NAME, description="namespace on the target (default: the same)"
    )
    index_shards: int = Field(default=16, ge=1, le=1024, description="must match the managers' setting")
    batch_size: int = Field(
        default=100, ge=1, le=10_000, description="sessions read and written per round trip"
    )
    enable_validation: bool = Field(
        default=True, description="validate after each migration unless told not to"
    )
    conflict_policy: ConflictPolicy = "newest-wins"
    copy_mode: Literal["auto", "restore", "logical"] = Field(
        default="auto",
        description="restore: DUMP/RESTORE each session's keys inside the import script (needs a target "
        "version >= the source's); logical: re-create every entry (any versions); auto: restore when the "
        "versions allow it, falling back to logical if the target refuses a payload",
    )
    task_ttl: int = Field(
        default=7 * 86400,
        ge=60,
        description="seconds task status, markers and backups are kept on the target",
    )
    lease_ttl: float = Field(
        default=15.0,
        ge=0.5,
        le=600,
        description="seconds after which a task whose process died can be resumed",
    )
    sync_interval: float = Field(default=5.0, ge=0.05, le=86400, description="seconds between periodic syncs")
    sync_block_ms: int = Field(default=1000, ge=10, le=60_000, description="XREAD BLOCK of real-time sync")
    sync_status_ttl: float = Field(
        default=15.0,
        ge=0.5,
        le=3600,
        description="seconds a sync link's status outlives its owner's heartbeat",
    )
    instances: dict[str, str] = Field(
        default_factory=dict, description="named Redis URLs for cross-instance sync ('target' is target_url)"
    )
    socket_timeout: float = Field(default=5.0, gt=0)
    retry_attempts: int = Field(default=3, ge=0, le=100)

    @field_validator("source_url", "target_url")
    @classmethod
    def _urls(cls, value: str) -> str:
        return _check_url(value)

    @field_validator("instances")
    @classmethod
    def _instances(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        for name, url in value.items():
            if re.fullmatch(_NAME, name) is None:
                raise ValueError(f"instance name {name!r} is not valid")
            _check_url(url)
        return value

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if self.source_url == self.target_url and self.namespace == self.effective_target_namespace:
            raise ValueError("source and target are the same Redis and namespace")
        return self

    @property
    def effective_target_namespace(self) -> str:
        """The namespace sessions are written to."""
        return self.target_namespace or self.namespace

    def redis_settings(self, url: str) -> RedisSettings:
        """Connection settings for one side."""
        return RedisSettings(
            redis_url=url, socket_timeout=self.socket_timeout, retry_attempts=self.retry_attempts
        )

    def instance_url(self, name: str) -> str | None:
        """URL of a named sync target ('target' is ``target_url``), or None if unknown."""
        if name == "target":
            return self.instances.get(name, self.target_url)
        return self.instances.get(name)
