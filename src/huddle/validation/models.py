"""Results of configuration validation: issues, recommendations, live checks, reports."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Environment = Literal["development", "staging", "production"]
ENVIRONMENTS: tuple[Environment, ...] = ("development", "staging", "production")
Category = Literal["schema", "consistency", "environment", "security", "performance", "runtime", "connection"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ValidationIssue(_Frozen):
    """One error or warning: what is wrong, where, and under which stable code."""

    code: str = Field(description="stable identifier of the rule, e.g. 'tls_required'")
    category: Category
    message: str
    field: str | None = Field(default=None, description="the setting concerned, if one is")


class Recommendation(_Frozen):
    """A suggestion with the reason behind it."""

    code: str
    category: Category
    message: str
    reason: str
    priority: Literal["high", "medium", "low"] = "medium"


class Check(_Frozen):
    """One live or static check and how it came out; ``unknown`` when the server did not let us look."""

    name: str
    status: Literal["pass", "fail", "warn", "unknown", "skipped"]
    detail: str


class ValidationResult(_Frozen):
    """Errors prevent operation; warnings may cause problems; recommendations optimise."""

    valid: bool
    errors: list[ValidationIssue] = Field(default_factory=list)
    warnings: list[ValidationIssue] = Field(default_factory=list)
    recommendations: list[Recommendation] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)

    def codes(self) -> set[str]:
        """Codes of every error, warning and recommendation (handy in tests and scripts)."""
        return (
            {i.code for i in self.errors}
            | {i.code for i in self.warnings}
            | {r.code for r in self.recommendations}
        )


class EnvironmentValidation(ValidationResult):
    """A validation under one environment's rules."""

    environment: Environment


class ServerFacts(_Frozen):
    """What the live server told us; ``None`` where it would not say (see ``unknown``)."""

    target: str
    topology: str
    user: str | None = None
    version: str | None = None
    aof_enabled: bool | None = None
    rdb_save: str | None = Field(
        default=None, description="the 'save' setting; '' means RDB snapshots are off"
    )
    maxmemory: int | None = None
    maxmemory_policy: str | None = None
    protected_mode: bool | None = None
    bind: str | None = None
    maxclients: int | None = None
    connected_clients: int | None = None
    default_user_enabled: bool | None = None
    default_user_nopass: bool | None = None
    default_user_all_permissions: bool | None = None
    tls: bool = False
    latency_ms: float | None = None
    unknown: dict[str, str] = Field(default_factory=dict, description="fact -> why it could not be checked")


class ConfigurationReport(_Frozen):
    """Everything ``generate_configuration_report`` found."""

    generated_at: datetime
    environment: Environment
    target: str
    validation: ValidationResult
    environment_validation: EnvironmentValidation
    recommendations: list[Recommendation]
    server: ServerFacts | None

    @property
    def valid(self) -> bool:
        """True when neither the configuration nor the environment has errors."""
        return self.validation.valid and self.environment_validation.valid
