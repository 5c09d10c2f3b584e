"""Schema validation: types and ranges with messages naming the field, plus cross-field consistency."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings

from ..config import SessionManagerConfig
from ..ids import ID_PATTERN, NAME_PATTERN
from .findings import Findings

MAX_SESSION_TTL = 30 * 86400
"""What ``SessionManager.create_session`` accepts as a per-session ttl."""
SESSION_OPTIONS = ("session_id", "metadata", "ttl", "initial_state")
_SPEC_NAMES = {"tls": "ssl", "url": "redis_url"}


class _Parsed(SessionManagerConfig):
    """SessionManagerConfig whose constructor raises pydantic's ValidationError (every field's details kept)."""

    def __init__(self, **values: Any) -> None:
        BaseSettings.__init__(self, **values)


def snake_name(name: str) -> str:
    """``defaultTTL`` -> ``default_ttl``, ``maxEventsPerSession`` -> ``max_events_per_session``."""
    snake = re.sub(r"(?<=[a-z0-9])([A-Z]+)", r"_\1", name).lower()
    return _SPEC_NAMES.get(snake, snake)


def normalize(data: Mapping[str, Any], findings: Findings) -> dict[str, Any]:
    """Accept the spec's camelCase names and its nested ``redis: {...}`` block as our flat settings."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "redis" and isinstance(value, Mapping):
            for inner, inner_value in value.items():
                flat.setdefault(snake_name(str(inner)), inner_value)
            findings.check("spec names", "pass", "read the nested 'redis' block as flat connection settings")
            continue
        name = snake_name(str(key))
        if name != key:
            findings.check("spec names", "pass", f"read {key!r} as {name!r}")
        if name in flat:
            findings.error(
                "duplicate_setting", "schema", f"{name} is given twice ({key!r} and another spelling)", name
            )
        flat[name] = value
    return flat


def _allowed(field: str) -> str:
    info = SessionManagerConfig.model_fields.get(field)
    if info is None:
        return ""
    low = high = None
    for item in info.metadata:
        if isinstance(item, Ge):
            low = f">= {item.ge}"
        elif isinstance(item, Gt):
            low = f"> {item.gt}"
        elif isinstance(item, Le):
            high = f"<= {item.le}"
        elif isinstance(item, Lt):
            high = f"< {item.lt}"
    bounds = " and ".join(part for part in (low, high) if part)
    text = f"allowed: {bounds}" if bounds else ""
    if info.description:
        text = f"{text}; {info.description}" if text else info.description
    return f" ({text})" if text else ""


def _message(error: ErrorDetails) -> tuple[str, str]:
    field = ".".join(str(part) for part in error["loc"]) or "(settings)"
    if error["type"] == "extra_forbidden":
        return field, f"{field} is not a setting huddle knows"
    if error["type"] == "missing":
        return field, f"{field} is required"
    shown = "***" if "password" in field else repr(error.get("input"))
    return field, f"{field}: {error['msg'].lower()}, got {shown}{_allowed(field)}"


def check_schema(config: object, findings: Findings) -> SessionManagerConfig | None:
    """The parsed settings, or None with every problem recorded in ``findings``."""
    if isinstance(config, SessionManagerConfig):
        findings.check("schema", "pass", "a SessionManagerConfig (validated when it was built)")
        return config
    if not isinstance(config, Mapping):
        findings.error(
            "not_a_mapping",
            "schema",
            f"configuration must be a mapping or SessionManagerConfig, not {type(config).__name__}",
        )
        return None
    data = normalize(config, findings)
    try:
        parsed = SessionManagerConfig(**dict(_Parsed(**data)))
    except ValidationError as exc:
        for error in exc.errors():
            field, message = _message(error)
            findings.error(
                f"invalid_{error['type']}", "schema", message, None if field == "(settings)" else field
            )
        findings.check("schema", "fail", f"{exc.error_count()} setting(s) invalid")
        return None
    findings.check("schema", "pass", f"{len(data)} setting(s) valid")
    return parsed


def check_consistency(config: SessionManagerConfig, findings: Findings) -> None:
    """Settings that are valid alone but work against each other."""
    if config.enable_auto_checkpoint and config.checkpoint_interval > config.max_events_per_session:
        findings.warning(
            "checkpoint_interval_exceeds_log", "consistency",
            f"checkpoint_interval ({config.checkpoint_interval}) exceeds max_events_per_session "
            f"({config.max_events_per_session}): events are trimmed before the next checkpoint covers them",
            "checkpoint_interval",
        )  # fmt: skip
    if config.enable_failure_snapshots and config.failure_snapshot_events > config.max_events_per_session:
        findings.warning(
            "snapshot_larger_than_log", "consistency",
            f"failure_snapshot_events ({config.failure_snapshot_events}) exceeds max_events_per_session "
            f"({config.max_events_per_session}); a snapshot can never hold that many events",
            "failure_snapshot_events",
        )  # fmt: skip
    if config.retry_backoff_cap < config.retry_backoff_base:
        findings.warning(
            "backoff_cap_below_base", "consistency",
            f"retry_backoff_cap ({config.retry_backoff_cap}s) is below retry_backoff_base "
            f"({config.retry_backoff_base}s), so every retry waits the cap",
            "retry_backoff_cap",
        )  # fmt: skip
    if config.subscribe_block_ms >= config.socket_timeout * 1000:
        findings.recommend(
            "subscribe_block_capped", "consistency",
            f"lower subscribe_block_ms below socket_timeout ({config.socket_timeout * 1000:g} ms)",
            f"a blocking read may not outlast the socket timeout, so {config.subscribe_block_ms} ms is cut to "
            f"{config.socket_timeout * 1000 - 250:g} ms",
            priority="low",
        )  # fmt: skip
    if config.grace_ttl > config.default_ttl:
        findings.warning(
            "grace_longer_than_ttl", "consistency",
            f"grace_ttl ({config.grace_ttl}s) is longer than default_ttl ({config.default_ttl}s): abandoned "
            "sessions outlive active ones",
            "grace_ttl",
        )  # fmt: skip


def check_session_options(options: object, config: SessionManagerConfig, findings: Findings) -> None:
    """The options of ``create_session`` (session_id, metadata, ttl, initial_state), as the manager checks them."""
    if not isinstance(options, Mapping):
        findings.error(
            "not_a_mapping", "schema", f"session options must be a mapping, not {type(options).__name__}"
        )
        return
    for key, value in options.items():
        name = snake_name(str(key))
        if name not in SESSION_OPTIONS:
            findings.error(
                "unknown_option",
                "schema",
                f"{key} is not a session option ({', '.join(SESSION_OPTIONS)})",
                name,
            )
        elif name == "session_id" and (not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None):
            findings.error(
                "invalid_session_id",
                "schema",
                f"session_id {value!r}: use 1-128 of A-Z a-z 0-9 _ . : -",
                name,
            )
        elif name == "initial_state" and (
            not isinstance(value, str) or NAME_PATTERN.fullmatch(value) is None
        ):
            findings.error(
                "invalid_state", "schema", f"initial_state {value!r}: use 1-64 of A-Z a-z 0-9 _ . : -", name
            )
        elif name == "ttl" and (type(value) is not int or not 1 <= value <= MAX_SESSION_TTL):
            findings.error(
                "invalid_ttl",
                "schema",
                f"ttl must be an integer 1..{MAX_SESSION_TTL} seconds, got {value!r}",
                name,
            )
        elif name == "metadata":
            _check_metadata(value, config.max_event_bytes, findings)


def _check_metadata(value: object, limit: int, findings: Findings) -> None:
    if not isinstance(value, Mapping):
        findings.error(
            "invalid_metadata",
            "schema",
            f"metadata must be a mapping, not {type(value).__name__}",
            "metadata",
        )
        return
    try:
        size = len(json.dumps(dict(value), separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        findings.error("invalid_metadata", "schema", f"metadata must be JSON-serializable: {exc}", "metadata")
        return
    if size > limit:
        findings.error(
            "metadata_too_large",
            "schema",
            f"metadata is {size} bytes; max_event_bytes allows {limit}",
            "metadata",
        )
