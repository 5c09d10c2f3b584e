"""HealthConfig: how often to check, what to measure, alert thresholds, the optional bearer token."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from ..config import HuddleSettings


class Threshold(BaseModel):
    """Warning and critical levels of one figure; ``direction='below'`` for figures that must stay high."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warning: float | None = None
    critical: float | None = None
    direction: Literal["above", "below"] = "above"

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.warning is not None and self.critical is not None:
            bad = self.critical < self.warning if self.direction == "above" else self.critical > self.warning
            if bad:
                raise ValueError(
                    f"critical ({self.critical}) must be {'>=' if self.direction == 'above' else '<='} "
                    f"warning ({self.warning}) for direction {self.direction!r}"
                )
        return self

    def level_of(self, value: float) -> Literal["healthy", "warning", "critical"]:
        """The level ``value`` reaches (a value equal to a threshold reaches it)."""

        def crossed(limit: float | None) -> bool:
            if limit is None:
                return False
            return value >= limit if self.direction == "above" else value <= limit

        if crossed(self.critical):
            return "critical"
        if crossed(self.warning):
            return "warning"
        return "healthy"

    def limit_for(self, level: str) -> float | None:
        """The threshold of ``level`` (warning or critical)."""
        return self.critical if level == "critical" else self.warning if level == "warning" else None


DEFAULT_THRESHOLDS: dict[str, Threshold] = {
    "redis:responseTime": Threshold(warning=50, critical=250),
    "redis:memoryUtilization": Threshold(warning=0.80, critical=0.95),
    "redis:evictedKeys": Threshold(warning=1),
    "pubsub:responseTime": Threshold(warning=100, critical=1000),
    "sessions:oldestBroken": Threshold(warning=3600),
    "performance:errorRate": Threshold(warning=0.05, critical=0.25),
    "performance:p99ResponseTime": Threshold(warning=500, critical=2000),
    "process:eventLoopLag": Threshold(warning=100, critical=1000),
    "migration:syncLagSeconds": Threshold(warning=30, critical=300),
}
"""Thresholds used unless ``HealthConfig.thresholds`` overrides them (units as each check reports them:
milliseconds for response times and loop lag, a 0..1 ratio for memory and error rate, seconds for ages)."""


class HealthConfig(HuddleSettings):
    """Settings of ``SessionHealthCheck``; each field can come from ``HUDDLE_HEALTH_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="HUDDLE_HEALTH_", extra="forbid", frozen=True)

    check_interval: float = Field(
        default=30.0, ge=0.1, le=3600, description="seconds between background checks; also the cache age"
    )
    check_timeout: float = Field(
        default=5.0, gt=0, le=120, description="seconds one component check may take"
    )
    enable_detailed_metrics: bool = Field(default=True, description="include performance and process metrics")
    enable_alerts: bool = Field(default=True, description="evaluate thresholds and call alert callbacks")
    thresholds: dict[str, Threshold] = Field(
        default_factory=dict,
        description="per-check overrides of DEFAULT_THRESHOLDS, e.g. 'redis:responseTime'",
    )
    min_samples: int = Field(
        default=20, ge=1, description="operations a window needs before its error rate or p99 can alert"
    )
    loop_lag_interval: float = Field(default=0.5, gt=0, le=60, description="seconds between loop-lag probes")
    auth_token: SecretStr | None = Field(
        default=None, description="bearer token required by every endpoint except /livez and /readyz"
    )
    service_id: str = Field(default="huddle", min_length=1, max_length=128)

    @field_validator("thresholds", mode="before")
    @classmethod
    def _check_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for name in value:
                if not isinstance(name, str) or name.count(":") != 1:
                    raise ValueError(f"threshold name {name!r} must look like 'component:measurement'")
        return value

    def threshold(self, check: str) -> Threshold | None:
        """The threshold in force for ``check`` (override, else default, else None)."""
        return self.thresholds.get(check) or DEFAULT_THRESHOLDS.get(check)
