"""SessionConfigValidator: schema, environment, security, performance and runtime validation."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from ..backend.connection import RedisClient, create_client, ready, uses_tls
from ..config import RedisSettings, SessionManagerConfig
from ..errors import ConfigError, HuddleError
from . import performance, rules, schema
from .findings import Findings
from .models import (
    ENVIRONMENTS,
    ConfigurationReport,
    Environment,
    EnvironmentValidation,
    Recommendation,
    ServerFacts,
    ValidationResult,
)
from .server import probe, version_tuple


def check_environment_name(environment: object) -> Environment:
    """``environment`` if it is development, staging or production; else ``ConfigError``."""
    for name in ENVIRONMENTS:
        if environment == name:
            return name
    raise ConfigError(f"environment must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}")


class SessionConfigValidator:
    """Validates settings and the Redis they point at; never raises for a bad configuration, it reports it.

    ``redis_client`` (optional) is used for live checks; without it a short-lived client is built from the
    settings being validated. ``config_file`` is checked for embedded credentials."""

    def __init__(
        self,
        redis_client: RedisClient | None = None,
        *,
        config: SessionManagerConfig | None = None,
        config_file: str | Path | None = None,
        expected_concurrency: int | None = None,
    ) -> None:
        if expected_concurrency is not None and expected_concurrency < 1:
            raise ConfigError(
                f"expected_concurrency must be a positive integer, got {expected_concurrency!r}"
            )
        self.client = redis_client
        self.config = config
        self.config_file = Path(config_file) if config_file is not None else None
        self.expected_concurrency = expected_concurrency

    # -- static ------------------------------------------------------------------------------------------------
    async def validate_config(self, config: object = None) -> ValidationResult:
        """Types, ranges and cross-field consistency of ``config`` (a mapping or SessionManagerConfig; None: the
        validator's config, else ``HUDDLE_*``), plus performance recommendations (measured from stored sessions
        when a client was given)."""
        findings = Findings()
        parsed = self._settings(config, findings)
        if parsed is not None:
            schema.check_consistency(parsed, findings)
            performance.check_static(parsed, findings, self.expected_concurrency)
            if self.client is not None:
                await performance.check_event_rate(self.client, parsed, findings)
        return findings.result()

    def validate_session_options(self, options: object) -> ValidationResult:
        """The options of ``create_session`` (session_id, metadata, ttl, initial_state)."""
        findings = Findings()
        schema.check_session_options(
            options, self.config or SessionManagerConfig.model_validate({}), findings
        )
        return findings.result()

    # -- live --------------------------------------------------------------------------------------------------
    async def validate_environment(
        self, environment: str, config: SessionManagerConfig | Mapping[str, Any] | None = None
    ) -> EnvironmentValidation:
        """``environment``'s rules (auth, TLS, persistence, eviction, version, exposure) on the settings and on
        the live server; a fact the server does not let us read is reported as "could not check"."""
        env = check_environment_name(environment)
        findings = Findings()
        parsed = self._settings(config, findings)
        if parsed is not None:
            await self._environment(env, parsed, findings)
        return findings.environment_result(env)

    async def validate_redis_connection(
        self, settings: RedisSettings | Mapping[str, Any] | None = None
    ) -> ValidationResult:
        """Connect with ``settings`` (TLS, AUTH/ACL), measure the round trip, read the version and the user."""
        findings = Findings()
        parsed: RedisSettings | None
        if isinstance(settings, RedisSettings):
            parsed = settings
        elif settings is None:
            parsed = self.config or self._from_env(findings)
        else:
            parsed = schema.check_schema(settings, findings) if isinstance(settings, Mapping) else None
            if parsed is None and not isinstance(settings, Mapping):
                findings.error(
                    "not_a_mapping",
                    "schema",
                    f"settings must be RedisSettings or a mapping, not {type(settings).__name__}",
                )
        if parsed is not None:
            facts = await self._probe(parsed, findings)
            if (
                facts is not None
                and facts.version is not None
                and version_tuple(facts.version) < rules.MIN_VERSION
            ):
                findings.error(
                    "redis_too_old",
                    "connection",
                    f"Redis {facts.version} is too old: huddle needs 6.2 or newer",
                )
        return findings.result()

    async def validate_production_readiness(
        self, config: SessionManagerConfig | Mapping[str, Any] | None = None
    ) -> ValidationResult:
        """Everything at once under production rules: schema, consistency, performance, security, runtime."""
        findings = Findings()
        parsed = self._settings(config, findings)
        if parsed is not None:
            schema.check_consistency(parsed, findings)
            performance.check_static(parsed, findings, self.expected_concurrency)
            await self._environment("production", parsed, findings)
        return findings.result()

    async def generate_configuration_report(
        self, config: SessionManagerConfig | Mapping[str, Any] | None = None, environment: str = "production"
    ) -> ConfigurationReport:
        """The configuration's validation, its environment validation and every recommendation, in one report."""
        env = check_environment_name(environment)
        validation = await self.validate_config(config)
        findings = Findings()
        parsed = self._settings(config, findings)
        facts = await self._environment(env, parsed, findings) if parsed is not None else None
        env_result = findings.environment_result(env)
        merged: dict[str, Recommendation] = {}
        for rec in [*validation.recommendations, *env_result.recommendations]:
            merged.setdefault(rec.code, rec)
        order = {"high": 0, "medium": 1, "low": 2}
        return ConfigurationReport(
            generated_at=datetime.now(UTC), environment=env,
            target=parsed.describe_target() if parsed is not None else "(invalid settings)",
            validation=validation, environment_validation=env_result,
            recommendations=sorted(merged.values(), key=lambda rec: order[rec.priority]), server=facts,
        )  # fmt: skip

    # -- helpers -----------------------------------------------------------------------------------------------
    def _from_env(self, findings: Findings) -> SessionManagerConfig | None:
        try:
            return SessionManagerConfig()
        except ConfigError as exc:
            for problem in exc.details.get("problems", [str(exc)]):
                findings.error("invalid_setting", "schema", f"HUDDLE_* environment: {problem}")
            return None

    def _settings(self, config: object, findings: Findings) -> SessionManagerConfig | None:
        if config is None:
            return self.config or self._from_env(findings)
        return schema.check_schema(config, findings)

    async def _environment(
        self, env: Environment, config: SessionManagerConfig, findings: Findings
    ) -> ServerFacts | None:
        rules.check_config_rules(config, env, findings)
        if self.config_file is not None:
            rules.check_config_file(self.config_file, env, findings)
        facts = await self._probe(config, findings)
        if facts is not None:
            rules.check_server_rules(facts, env, findings)
            performance.check_server_capacity(config, facts, findings)
        return facts

    async def _probe(self, settings: RedisSettings, findings: Findings) -> ServerFacts | None:
        """Live facts through the given client, or a short-lived one built from ``settings``."""
        target = settings.describe_target()
        client = self.client
        owned = client is None
        try:
            if client is None:
                client = create_client(settings.model_copy(update={"retry_attempts": 0}))
            facts = await probe(await ready(client), target, tls=uses_tls(settings))  # detection awaited
        except AuthenticationError as exc:
            findings.error("auth_failed", "connection", f"authentication to {target} failed: {exc}")
        except NoPermissionError as exc:
            findings.error(
                "not_permitted", "connection",
                f"{target} refused a command huddle needs ({exc}); see the ACL in docs/configuration.md",
            )  # fmt: skip
        except (RedisError, OSError, HuddleError) as exc:
            findings.error("unreachable", "connection", f"cannot connect to {target}: {_cause(exc)}")
        else:
            findings.check(
                "connection",
                "pass",
                f"{target} answered in {facts.latency_ms:.2f} ms as {facts.user or 'default'}",
            )
            return facts
        finally:
            if owned and client is not None:
                await client.aclose()
        findings.check("connection", "fail", f"{target}: live checks skipped")
        return None


def _cause(exc: BaseException) -> str:
    """The most telling message in an exception chain (TLS failures hide under a connection error)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return f"TLS handshake failed: {seen}"
        seen = seen.__cause__ or seen.__context__
    return str(exc)
