"""Environment and security rules: development is relaxed, staging warns, production requires."""

from __future__ import annotations

import ipaddress
import stat
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..backend.connection import uses_tls
from ..config import SessionManagerConfig
from .findings import Findings, Level
from .models import Environment, ServerFacts
from .server import LOOPBACK_BINDS, version_tuple

MIN_VERSION = (6, 2)
SAFE_POLICIES = {"noeviction"}
VOLATILE_POLICIES = {"volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"}

_STRICT: dict[Environment, Level] = {"development": "info", "staging": "warning", "production": "error"}
_FLAG: dict[Environment, Level] = {"development": "info", "staging": "warning", "production": "warning"}


def is_loopback(host: str | None) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (a unix socket counts too)."""
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def target_host(config: SessionManagerConfig) -> str | None:
    """The host the settings connect to (None for a unix socket)."""
    if config.redis_url:
        parts = urlsplit(config.redis_url)
        return None if parts.scheme == "unix" else parts.hostname
    if config.sentinels:
        return config.sentinels.split(",")[0].rpartition(":")[0] or config.sentinels
    return config.host


def has_credentials(config: SessionManagerConfig) -> bool:
    """True when the settings authenticate (password or ACL user, in fields or in the URL)."""
    if config.password is not None or config.username is not None:
        return True
    if config.redis_url:
        parts = urlsplit(config.redis_url)
        return bool(parts.password or parts.username)
    return False


def check_config_rules(config: SessionManagerConfig, environment: Environment, findings: Findings) -> None:
    """Rules that the settings alone decide: authentication, TLS, retries."""
    strict = _STRICT[environment]
    if has_credentials(config):
        findings.check("authentication", "pass", "settings carry a password or ACL user")
    else:
        findings.check(
            "authentication", "fail" if strict == "error" else "warn", "no password or ACL user set"
        )
        findings.at_level(
            strict, "auth_required", "security",
            f"{environment} requires authentication: set HUDDLE_PASSWORD (requirepass) or HUDDLE_USERNAME + "
            "HUDDLE_PASSWORD (an ACL user)",
            "without AUTH anyone who reaches the port can read and delete every session", "password",
        )  # fmt: skip
    host = target_host(config)
    if uses_tls(config):
        findings.check("tls", "pass", "connections use TLS")
    elif is_loopback(host):
        findings.check("tls", "pass", f"no TLS, but {host or 'the unix socket'} is local")
    else:
        findings.check("tls", "fail" if strict == "error" else "warn", f"plain TCP to {host}")
        findings.at_level(
            strict, "tls_required", "security",
            f"{environment} requires TLS to the non-loopback host {host}: use a rediss:// URL or HUDDLE_SSL=true",
            "session data and the AUTH password cross the network in clear text", "redis_url",
        )  # fmt: skip
    if environment == "production" and config.retry_attempts == 0:
        findings.warning(
            "no_retries", "environment",
            "retry_attempts is 0: a single dropped connection fails the operation", "retry_attempts",
        )  # fmt: skip


def check_server_rules(facts: ServerFacts, environment: Environment, findings: Findings) -> None:
    """Rules that need the live server: version, persistence, eviction, exposure, default user."""
    strict, flag = _STRICT[environment], _FLAG[environment]
    _version(facts, findings)
    _persistence(facts, environment, strict, findings)
    _eviction(facts, environment, strict, findings)
    if facts.default_user_nopass and facts.default_user_enabled:
        findings.check(
            "server authentication", "fail" if strict == "error" else "warn", "the default user has nopass"
        )
        findings.at_level(
            strict, "server_allows_anonymous", "security",
            "the server accepts connections without a password (the default user is on with nopass)",
            "anyone who reaches the port is the default user", None,
        )  # fmt: skip
    elif "default_user_nopass" in facts.unknown:
        findings.check(
            "server authentication", "unknown", f"could not check: {facts.unknown['default_user_nopass']}"
        )
    else:
        findings.check("server authentication", "pass", "the default user needs a password or is off")
    if facts.default_user_all_permissions:
        findings.check(
            "default user permissions", "warn", "the default user may run every command on every key"
        )
        findings.at_level(
            flag, "default_user_all_permissions", "security",
            "the default user has all permissions (+@all ~*): give huddle its own ACL user limited to its key "
            "namespace and the commands it uses, and restrict or disable the default user",
            "a leaked requirepass password then opens the whole server (FLUSHALL, CONFIG SET, ...)",
        )  # fmt: skip
    elif "default_user_all_permissions" in facts.unknown:
        findings.check(
            "default user permissions",
            "unknown",
            f"could not check: {facts.unknown['default_user_all_permissions']}",
        )
    _exposure(facts, flag, findings)


def _version(facts: ServerFacts, findings: Findings) -> None:
    if facts.version is None:
        findings.check(
            "redis version", "unknown", f"could not check: {facts.unknown.get('version', 'not reported')}"
        )
        findings.warning(
            "version_unknown", "runtime", f"could not check the Redis version: {facts.unknown.get('version')}"
        )
    elif version_tuple(facts.version) < MIN_VERSION:
        findings.check("redis version", "fail", f"{facts.version} < 6.2")
        findings.error(
            "redis_too_old", "runtime", f"Redis {facts.version} is too old: huddle needs 6.2 or newer"
        )
    else:
        findings.check("redis version", "pass", f"{facts.version} >= 6.2")


def _persistence(facts: ServerFacts, environment: Environment, strict: Level, findings: Findings) -> None:
    aof, rdb = facts.aof_enabled, facts.rdb_save
    if aof or rdb:
        findings.check("persistence", "pass", f"AOF {'on' if aof else 'off'}, RDB save {rdb!r}")
        return
    if rdb is None or aof is None:
        why = facts.unknown.get("rdb_save") or facts.unknown.get("aof_enabled") or "not reported"
        findings.check("persistence", "unknown", f"could not check: {why}")
        findings.at_level(
            "warning" if strict != "info" else "info", "persistence_unknown", "runtime",
            f"could not check persistence ({why}); make sure AOF or RDB is on", "a restart would lose every session",
        )  # fmt: skip
        return
    findings.check(
        "persistence", "fail" if strict == "error" else "warn", "AOF and RDB snapshots are both off"
    )
    findings.at_level(
        strict, "persistence_off", "environment",
        f"{environment} requires persistence: the server has AOF off and no RDB save points "
        "(appendonly yes, or a save schedule)",
        "a restart or crash of Redis loses every session", None,
    )  # fmt: skip


def _eviction(facts: ServerFacts, environment: Environment, strict: Level, findings: Findings) -> None:
    policy = facts.maxmemory_policy
    if policy is None:
        findings.check(
            "eviction policy", "unknown", f"could not check: {facts.unknown.get('maxmemory_policy')}"
        )
        return
    if policy in SAFE_POLICIES:
        findings.check(
            "eviction policy", "pass", "noeviction: writes fail when memory is full, no key is dropped"
        )
    elif policy in VOLATILE_POLICIES:
        findings.check("eviction policy", "warn", f"{policy} evicts keys that carry a TTL")
        findings.at_level(
            "warning" if strict != "info" else "info", "eviction_volatile", "environment",
            f"maxmemory-policy {policy} evicts only keys with a TTL - and every huddle session key (meta, events, "
            "agents, checkpoints) carries one, so under memory pressure live sessions lose parts of their data; "
            "the global indexes (no TTL) are never evicted. Use noeviction, or size maxmemory so eviction never "
            "runs",
            "eviction of a session's events stream breaks the gapless log", None,
        )  # fmt: skip
    else:
        findings.check(
            "eviction policy", "fail" if strict == "error" else "warn", f"{policy} may evict any key"
        )
        findings.at_level(
            strict, "eviction_unsafe", "environment",
            f"maxmemory-policy {policy} may evict any key, including live session keys and the indexes: "
            f"{environment} needs noeviction",
            "evicted session keys lose acknowledged events without any error", None,
        )  # fmt: skip


def _exposure(facts: ServerFacts, flag: Level, findings: Findings) -> None:
    if facts.protected_mode is None or facts.bind is None:
        why = facts.unknown.get("protected_mode") or facts.unknown.get("bind") or "not reported"
        findings.check("network exposure", "unknown", f"could not check: {why}")
        return
    binds = set(facts.bind.split())
    public = sorted(binds - LOOPBACK_BINDS) or (["(all interfaces)"] if not binds else [])
    if not facts.protected_mode and public:
        findings.check("network exposure", "warn", f"protected-mode off, bound to {' '.join(public)}")
        findings.at_level(
            flag, "protected_mode_off", "security",
            f"protected-mode is off while the server listens on {' '.join(public)}: turn it on, or bind only to "
            "private interfaces behind a firewall",
            "a server reachable from other hosts without protection is open to the network",
        )  # fmt: skip
    else:
        findings.check(
            "network exposure",
            "pass",
            f"bind {facts.bind}, protected-mode {'on' if facts.protected_mode else 'off'}",
        )


def check_config_file(
    path: str | Path, environment: Environment, findings: Findings
) -> dict[str, Any] | None:
    """Flag credentials written into a settings file (and a file others can read); returns its [huddle] table."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        findings.error("config_file_unreadable", "schema", f"cannot read {file}: {exc}")
        return None
    table = data.get("huddle", data)
    secrets = [key for key in ("password", "sentinel_password") if table.get(key)]
    url = table.get("redis_url")
    if isinstance(url, str) and urlsplit(url).password:
        secrets.append("redis_url (password inside the URL)")
    if secrets:
        findings.at_level(
            _STRICT[environment], "credentials_in_file", "security",
            f"{file} holds credentials ({', '.join(secrets)}): pass them as HUDDLE_PASSWORD or from a secret store",
            "config files end up in repositories, images and backups", secrets[0].split()[0],
        )  # fmt: skip
        mode = file.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            findings.warning(
                "credentials_file_readable", "security",
                f"{file} holds credentials and is readable by other users (mode {stat.S_IMODE(mode):o})",
            )  # fmt: skip
    else:
        findings.check("credentials in file", "pass", f"{file} holds no password")
    return dict(table)
