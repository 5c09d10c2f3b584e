"""Redis ACL rules for a least-privilege huddle user: its namespace's keys and channels, the commands it needs."""

from __future__ import annotations

from ..errors import ConfigError
from ..ids import check_name
from .connection import RedisClient, is_cluster, server_version

COMMAND_RULES: tuple[str, ...] = (
    "-@all",
    # data: hashes, streams, sorted sets, sets, lists, strings, expiry; no server administration
    "+@read",
    "+@write",
    "+@scripting",
    "+@pubsub",
    "+@transaction",
    "+@connection",
    "-@dangerous",
    # what -@dangerous removed but huddle uses (read-only introspection, WAIT, topology discovery)
    "+info",
    "+wait",
    "+time",
    "+client|setname",
    "+client|id",
    "+config|get",
    "+cluster|slots",
    "+cluster|nodes",
    "+cluster|info",
    "+cluster|myid",
    "+readonly",
    "+readwrite",
    # scripts must be loaded (and reloaded after a failover); flushing them stays forbidden
    "-script",
    "+script|load",
    "+script|exists",
    "-flushall",
    "-flushdb",
)
"""Command rules of the huddle user (categories, then the exceptions huddle needs)."""

NEWER_RULES: tuple[tuple[tuple[int, int], str], ...] = (
    ((7, 0), "+cluster|shards"),  # topology discovery of newer clients
    # the emit functions: FCALL (in +@scripting) and FUNCTION LOAD only; FLUSH/DELETE/RESTORE/KILL stay forbidden
    ((7, 0), "-function"),
    ((7, 0), "+function|load"),
    ((7, 2), "+client|setinfo"),  # redis-py announces its name and version
)
"""Rules for subcommands that only exist from a server version on (older servers reject unknown names)."""


def acl_rules(namespace: str, password: str, server: tuple[int, ...] = (6, 2)) -> list[str]:
    """``ACL SETUSER`` rules: on, this password, keys and channels ``<namespace>:*`` only, huddle's commands
    (for a server of version ``server``)."""
    check_name(namespace, "namespace")
    if not password or any(ch.isspace() for ch in password):
        raise ConfigError("the ACL password must be non-empty and contain no whitespace")
    newer = [rule for since, rule in NEWER_RULES if server >= since]
    keys_and_channels = [f"~{namespace}:*", "resetchannels", f"&{namespace}:*"]
    return ["reset", "on", f">{password}", *keys_and_channels, *COMMAND_RULES, *newer]


async def create_acl_user(
    client: RedisClient, username: str, password: str, namespace: str = "huddle"
) -> None:
    """Create (or reset) ``username`` with ``acl_rules`` on the server, on every node of a cluster.

    ``client`` must be an administrator's connection; ACLs are per node and are not replicated."""
    check_name(username, "ACL user name")
    rules = acl_rules(namespace, password, await server_version(client))
    if is_cluster(client):
        await client.execute_command("ACL", "SETUSER", username, *rules, target_nodes=client.ALL_NODES)
    else:
        await client.execute_command("ACL", "SETUSER", username, *rules)
