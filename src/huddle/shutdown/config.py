"""Settings of a graceful shutdown: grace period, per-phase timeouts, what to preserve, which signals."""

from __future__ import annotations

import signal
import socket
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..config import config_error_from
from ..ids import ID_PATTERN

_PHASE_SHARE = {"drain_timeout": 0.3, "checkpoint_timeout": 0.5, "cleanup_timeout": 0.2}
_ALLOWED_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2")


def default_instance_id() -> str:
    """The host name reduced to id characters: stable across restarts of the same host or pod."""
    name = "".join(ch if ch.isalnum() or ch in "_.:-" else "-" for ch in socket.gethostname())
    return name[:128] or "default"


class ShutdownConfig(BaseSettings):
    """How a ``SessionGracefulShutdown`` behaves; each field can come from ``HUDDLE_SHUTDOWN_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="HUDDLE_SHUTDOWN_", extra="forbid", frozen=True)

    grace_period: float = Field(
        default=30.0, gt=0, le=3600, description="seconds from the start of a shutdown until it is forced"
    )
    drain_timeout: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="seconds in-flight operations get to finish (None: 30% of grace)",
    )
    checkpoint_timeout: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="seconds for checkpoints, recordings, tasks and recovery data (None: 50% of grace)",
    )
    cleanup_timeout: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="seconds for closing components and connections (None: 20% of grace)",
    )
    force_close_timeout: float = Field(
        default=1.0, gt=0, le=60, description="seconds each close may take once the shutdown is forced"
    )
    checkpoint_active_sessions: bool = True
    preserve_replays: bool = True
    enable_recovery_data: bool = True
    recovery_ttl: int = Field(
        default=7 * 86400, ge=60, le=90 * 86400, description="seconds the recovery document is kept"
    )
    instance_id: str = Field(
        default_factory=default_instance_id,
        description="names this process's recovery document; give each worker its own stable id",
    )
    namespace: str | None = Field(
        default=None, description="key namespace; None takes the session manager's (or 'huddle')"
    )
    checkpoint_concurrency: int = Field(default=16, ge=1, le=1024)
    handle_signals: bool = True
    signals: tuple[str, ...] = ("SIGTERM", "SIGINT", "SIGQUIT")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise config_error_from(exc, type(self).__name__) from None

    @field_validator("instance_id")
    @classmethod
    def _check_instance(cls, value: str) -> str:
        if ID_PATTERN.fullmatch(value) is None:
            raise ValueError("use 1-128 characters from A-Z a-z 0-9 _ . : - (no braces or spaces)")
        return value

    @field_validator("signals")
    @classmethod
    def _check_signals(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in _ALLOWED_SIGNALS or not hasattr(signal, name):
                raise ValueError(
                    f"{name!r} is not a signal this platform can handle ({', '.join(_ALLOWED_SIGNALS)})"
                )
        return value

    @model_validator(mode="after")
    def _check_phases(self) -> Self:
        for name in _PHASE_SHARE:
            value = getattr(self, name)
            if value is not None and value > self.grace_period:
                raise ValueError(f"{name} ({value:g}s) exceeds grace_period ({self.grace_period:g}s)")
        return self

    def phase_timeout(self, name: str) -> float:
        """Seconds phase ``name`` (drain, checkpoint, cleanup) may take: as set, else its share of the grace."""
        value: float | None = getattr(self, f"{name}_timeout")
        return value if value is not None else self.grace_period * _PHASE_SHARE[f"{name}_timeout"]

    def signal_numbers(self) -> list[signal.Signals]:
        """The configured signals as ``signal.Signals``."""
        return [signal.Signals[name] for name in self.signals]


class ShutdownOptions(BaseModel):
    """Options of one ``shutdown()`` call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str = Field(default="shutdown requested", min_length=1, max_length=500)
    graceful: bool = Field(default=True, description="False skips draining and checkpoints: forced at once")
    preserve_data: bool = Field(
        default=True, description="False skips checkpoints, recordings and recovery data"
    )

    @classmethod
    def build(cls, **values: Any) -> ShutdownOptions:
        """Validated options; bad values raise ``ConfigError``."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise config_error_from(exc, "ShutdownOptions") from None


__all__ = ["ShutdownConfig", "ShutdownOptions", "default_instance_id"]
