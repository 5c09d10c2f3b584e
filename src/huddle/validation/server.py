"""Reading the live server: INFO, CONFIG GET (where permitted), ACL WHOAMI / GETUSER.

Every fact that cannot be read (command not permitted, renamed, unknown to the server) is left ``None`` and
the reason kept in ``ServerFacts.unknown``; nothing is guessed."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoPermissionError, RedisError, ResponseError

from ..backend.connection import RedisClient, is_cluster, topology
from .models import ServerFacts

LOOPBACK_BINDS = {"127.0.0.1", "::1", "-::1", "localhost"}


def version_tuple(version: str) -> tuple[int, ...]:
    """``"7.0.15"`` -> ``(7, 0, 15)``."""
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def _why(exc: Exception, command: str, user: str | None) -> str:
    if isinstance(exc, NoPermissionError):
        return f"{command} is not permitted for user {user or 'default'}"
    if isinstance(exc, ResponseError) and "unknown command" in str(exc).lower():
        return f"{command} is disabled or renamed on this server"
    return f"{command} failed: {exc}"


async def _each_node(client: RedisClient, *args: Any) -> list[Any]:
    """Run a command on every primary (cluster) or on the server (standalone); one reply per node."""
    if is_cluster(client):
        replies = await client.execute_command(*args, target_nodes=RedisCluster.PRIMARIES)
        return list(replies.values()) if isinstance(replies, dict) else [replies]
    return [await client.execute_command(*args)]


def _config_value(reply: Any, name: str) -> str | None:
    if isinstance(reply, dict):
        value = reply.get(name)
        return None if value is None else str(value)
    if isinstance(reply, list) and len(reply) >= 2:
        return str(reply[1])
    return None


def _acl_fields(reply: Any) -> dict[str, Any]:
    if isinstance(reply, dict):
        return reply
    if isinstance(reply, list):
        return {str(reply[i]): reply[i + 1] for i in range(0, len(reply) - 1, 2)}
    return {}


def _all_permissions(fields: dict[str, Any]) -> bool:
    flags = [str(flag) for flag in fields.get("flags", [])]
    commands = str(fields.get("commands", ""))
    keys = fields.get("keys", "")
    keys_text = " ".join(keys) if isinstance(keys, list) else str(keys)
    all_commands = "allcommands" in flags or commands.startswith("+@all")
    all_keys = "allkeys" in flags or "~*" in keys_text.split() or keys_text.strip() == "*"
    return all_commands and all_keys and "-" not in commands.removeprefix("+@all")


async def probe(client: RedisClient, target: str, *, tls: bool) -> ServerFacts:
    """What the server behind ``client`` reports about itself."""
    facts: dict[str, Any] = {"target": target, "topology": topology(client), "tls": tls}
    unknown: dict[str, str] = {}
    started = time.perf_counter()
    await client.ping()
    facts["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
    user: str | None = None
    try:
        user = str((await _each_node(client, "ACL", "WHOAMI"))[0])
        facts["user"] = user
    except RedisError as exc:
        unknown["user"] = _why(exc, "ACL WHOAMI", None)
    await _read_info(client, facts, unknown, user)
    await _read_config(client, facts, unknown, user)
    await _read_default_user(client, facts, unknown, user)
    return ServerFacts(**facts, unknown=unknown)


async def _read_info(
    client: RedisClient, facts: dict[str, Any], unknown: dict[str, str], user: str | None
) -> None:
    try:
        infos = await _each_node(client, "INFO")
    except RedisError as exc:
        reason = _why(exc, "INFO", user)
        for name in (
            "version",
            "aof_enabled",
            "maxmemory",
            "maxmemory_policy",
            "maxclients",
            "connected_clients",
        ):
            unknown[name] = reason
        return
    versions = [str(info["redis_version"]) for info in infos if "redis_version" in info]
    if versions:
        facts["version"] = min(versions, key=version_tuple)
    if all("aof_enabled" in info for info in infos):
        facts["aof_enabled"] = all(int(info["aof_enabled"]) == 1 for info in infos)
    policies = {str(info["maxmemory_policy"]) for info in infos if "maxmemory_policy" in info}
    if len(policies) == 1:
        facts["maxmemory_policy"] = policies.pop()
    elif policies:
        facts["maxmemory_policy"] = ",".join(sorted(policies))
    if all("maxmemory" in info for info in infos):
        facts["maxmemory"] = min(int(info["maxmemory"]) for info in infos)
    if all("maxclients" in info for info in infos):
        facts["maxclients"] = min(int(info["maxclients"]) for info in infos)
    if all("connected_clients" in info for info in infos):
        facts["connected_clients"] = max(int(info["connected_clients"]) for info in infos)


async def _read_config(
    client: RedisClient, facts: dict[str, Any], unknown: dict[str, str], user: str | None
) -> None:
    wanted = {"rdb_save": "save", "protected_mode": "protected-mode", "bind": "bind"}
    if facts.get("maxclients") is None:
        wanted["maxclients"] = "maxclients"
    for fact, name in wanted.items():
        try:
            values = [_config_value(reply, name) for reply in await _each_node(client, "CONFIG", "GET", name)]
        except RedisError as exc:
            unknown[fact] = _why(exc, f"CONFIG GET {name}", user)
            continue
        known = [value for value in values if value is not None]
        if not known:
            unknown[fact] = f"the server has no {name!r} setting"
        elif fact == "rdb_save":
            facts[fact] = "" if any(value.strip() == "" for value in known) else known[0]
        elif fact == "protected_mode":
            facts[fact] = all(value == "yes" for value in known)
        elif fact == "maxclients":
            facts[fact] = min(int(value) for value in known)
        else:
            facts[fact] = " ".join(sorted(set(" ".join(known).split())))


async def _read_default_user(
    client: RedisClient, facts: dict[str, Any], unknown: dict[str, str], user: str | None
) -> None:
    try:
        replies = await _each_node(client, "ACL", "GETUSER", "default")
    except RedisError as exc:
        reason = _why(exc, "ACL GETUSER default", user)
        for name in ("default_user_enabled", "default_user_nopass", "default_user_all_permissions"):
            unknown[name] = reason
        return
    fields = [_acl_fields(reply) for reply in replies]
    flags = [{str(flag) for flag in item.get("flags", [])} for item in fields]
    facts["default_user_enabled"] = any("on" in item for item in flags)
    facts["default_user_nopass"] = any("on" in item and "nopass" in item for item in flags)
    facts["default_user_all_permissions"] = any(
        "on" in flag and _all_permissions(item) for flag, item in zip(flags, fields, strict=True)
    )
