"""Lua scripts: loaded from ``scripts/*.lua`` once, called by SHA (reloaded after NOSCRIPT).

On Redis 7.0+ the append scripts (``emit``, ``emit_batch``) also run as Redis Functions: one library, loaded
once per server (every primary of a cluster), whose helpers are defined at load instead of on every call. A
server without functions (6.2), or a user the ACL does not let load or call them, uses the scripts instead;
"Function not found" (a restart or failover to a server without the library) loads it again, like NOSCRIPT.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    MovedError,
    NoPermissionError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)

from ...backend.connection import RedisClient, is_cluster, node_target, ready
from ...errors import (
    CorruptSessionDataError,
    HuddleError,
    NotAMemberError,
    RedisUnavailableError,
    SequenceConflictError,
    SessionCompletedError,
    SessionExistsError,
    SessionNotFoundError,
    StateConflictError,
)

_ERROR = re.compile(r"HUDDLE (\w+) \[([^\]]*)\]")
SCRIPT_NAMES = (
    "create",
    "join",
    "leave",
    "emit",
    "emit_batch",
    "checkpoint",
    "complete",
    "import_session",
    "rollback_session",
    "session_digest",
    "export_session",
)


@cache
def lua_file(name: str) -> str:
    """The text of ``scripts/<name>.lua`` as shipped in the package."""
    return (resources.files(__name__) / f"{name}.lua").read_text()


FUNCTION_SCRIPTS = ("emit", "emit_batch")
"""Scripts that also run as Redis Functions (7.0+): the per-event hot path. They also get emit_common.lua."""

MUTATION_SCRIPTS = ("join", "leave", "checkpoint", "complete")
"""Scripts that also get mutate_common.lua (checks of stored data shared by membership and lifecycle changes)."""


@cache
def script_source(name: str) -> str:
    """The full source of script ``name`` (common helpers, the helpers of its family, the body)."""
    helpers = [lua_file("common")]
    if name in FUNCTION_SCRIPTS:
        helpers.append(lua_file("emit_common"))
    elif name in MUTATION_SCRIPTS:
        helpers.append(lua_file("mutate_common"))
    return "\n".join([*helpers, lua_file(name)])


@cache
def library() -> tuple[str, dict[str, str]]:
    """(source of the huddle function library, script name -> function name).

    The library is the same common.lua + script bodies: each body becomes the callback of one function, which
    binds KEYS/ARGV and the key locals of common.lua before running it. Its name carries a hash of the sources,
    so servers shared by several huddle versions hold one library per version and none replaces another's."""
    parts = [lua_file("common"), lua_file("emit_common")] + [lua_file(name) for name in FUNCTION_SCRIPTS]
    tag = hashlib.sha1("\0".join(parts).encode()).hexdigest()[:12]
    names = {name: f"huddle_{name}_{tag}" for name in FUNCTION_SCRIPTS}
    lines = [f"#!lua name=huddle_{tag}", "local KEYS, ARGV = {}, {}", parts[0], parts[1], "PERSISTENT = true"]
    for name in FUNCTION_SCRIPTS:
        lines += [
            f"redis.register_function('{names[name]}', function(keys, args)",
            "KEYS, ARGV = keys, args",
            "K_META, K_EVENTS, K_AGENTS, K_CPS, K_IDEM, K_FAIL = keys[1], keys[2], keys[3], keys[4], keys[5], keys[6]",
            lua_file(name),
            "end)",
        ]
    return "\n".join(lines) + "\n", names


def _function_missing(exc: ResponseError) -> bool:
    return str(exc).startswith("Function not found")


def _functions_unsupported(exc: ResponseError) -> bool:
    """6.2 (no FCALL/FUNCTION), or an ACL that does not allow them."""
    text = str(exc).lower()
    if isinstance(exc, NoPermissionError):  # the command refused, not a key inside the function
        return "'fcall'" in text or "'function" in text
    return text.startswith("unknown command")


@lru_cache(maxsize=64)
def _split_settings(text: str) -> tuple[str, ...]:
    """emit.lua's settings argument as its 9 fields (the failure states CSV, last, may hold ':')."""
    return tuple(text.split(":", 8))


class Scripts:
    """The session scripts registered on one client."""

    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name)) for name in SCRIPT_NAMES
        }
        self._library, self._function_names = library()
        self.functions: bool | None = None
        """True once the function library answered, False when the server or the ACL has no functions."""
        self._reloading: asyncio.Lock | None = None
        self._library_loads = 0

    async def load(self, client: RedisClient) -> None:
        """SCRIPT LOAD every script and, where the server has them, FUNCTION LOAD the library."""
        for script in self._scripts.values():
            script.sha = await client.script_load(script.script)
        if self.functions is not False:
            await self._load_library(client)

    async def _load_library(self, client: RedisClient, *, replace: bool = False) -> None:
        """FUNCTION LOAD (every primary of a cluster); decides ``functions`` on first use.

        Without ``replace`` (at connect): a library of this name holds exactly these sources (the name carries
        their hash), so "already exists" means loaded, and nothing is recompiled or written to the AOF per
        connecting client. With ``replace`` (after "Function not found"): every primary answers only once it has
        the library, so the retried call cannot overtake a load still running on another connection."""
        try:
            await client.function_load(self._library, replace=replace)
        except ResponseError as exc:
            if "already exists" in str(exc):
                self.functions = True
            elif _functions_unsupported(exc):
                self.functions = False
            else:
                raise
        else:
            self.functions = True

    async def loaded(self, client: RedisClient) -> bool:
        """True if the server has every script cached."""
        shas = [script.sha for script in self._scripts.values()]
        return all(await client.script_exists(*shas))

    async def _reload_all(self, client: RedisClient) -> None:
        """After NOSCRIPT (restart, failover, SCRIPT FLUSH) load every script, once for concurrent callers."""
        if self._reloading is None:
            self._reloading = asyncio.Lock()
        async with self._reloading:
            shas = [script.sha for script in self._scripts.values()]
            if not all(await client.script_exists(*shas)):
                await self.load(client)

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script; a ``HUDDLE <code>`` error reply becomes the matching ``HuddleError``."""
        function = self._function_names.get(name) if self.functions is not False else None
        if function is not None:
            try:  # the path of every appended event: one call, no further layers
                return await self._client.execute_command("FCALL", function, len(keys), *keys, *args)
            except ResponseError as exc:
                return await self._run_after(name, keys, args, exc)
        return await self._run_script(name, keys, args)

    async def _run_after(self, name: str, keys: list[str], args: list[Any], exc: ResponseError) -> Any:
        """FCALL failed: load the library again, or fall back to the scripts, or raise the typed error."""
        if _functions_unsupported(exc):
            self.functions = False  # 6.2, or an ACL without FCALL/FUNCTION: the scripts do the same
            return await self._run_script(name, keys, args)
        if not _function_missing(exc):
            raise translate_script_error(exc) from exc
        try:
            return await self._fcall(name, keys, args)
        except ResponseError as again:
            raise translate_script_error(again) from again

    async def _run_script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        script = self._scripts[name]
        if (
            name == "emit" and len(args) == 11
        ):  # emit.lua's settings also split: a script parses them per call
            args = [*args[:10], *_split_settings(args[8]), args[10]]
        try:
            try:
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:  # the server restarted or failed over: load the scripts again, retry once
                await self._reload_all(self._client)
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)
        except ResponseError as exc:
            raise translate_script_error(exc) from exc

    async def _fcall(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """After "Function not found" (restart, failover, FUNCTION FLUSH): load the library, call again.

        Concurrent callers that all met the missing library share one load: the others wait for it."""
        if self._reloading is None:
            self._reloading = asyncio.Lock()
        loads = self._library_loads
        async with self._reloading:
            if self._library_loads == loads:  # nobody loaded it while this caller waited
                await self._load_library(self._client, replace=True)
                self._library_loads += 1
        if self.functions is False:  # the ACL refused FUNCTION LOAD: the scripts do the same
            return await self._run_script(name, keys, args)
        return await self._client.execute_command(
            "FCALL", self._function_names[name], len(keys), *keys, *args
        )

    async def run_and_wait(
        self,
        client: RedisClient,
        name: str,
        keys: list[str],
        args: list[Any],
        replicas: int,
        timeout_ms: int,
    ) -> tuple[Any, int]:
        """Run a script, then ``WAIT replicas timeout_ms`` on the same connection; returns (reply, replicas acked).

        WAIT only covers writes made by its own connection, so both go in one pipeline to the node of the slot.
        On a cluster that pipeline is not redirected (redis-py would resend only the script, elsewhere, and the
        WAIT would still ask the old master): after MOVED the slot map is updated and the pair sent again; after
        ASK (slot being migrated) the pair goes to the importing node behind ASKING, on one connection; TRYAGAIN
        (keys of the slot split between the two nodes) waits a little for the migration, like redis-py does."""
        script = self._scripts[name]
        reloads, redirects, retries, asking = 0, 0, 0, None
        while True:
            target = {"target_nodes": asking} if asking is not None else node_target(client, keys[0])
            async with client.pipeline(transaction=False) as pipe:
                if asking is not None:
                    pipe.execute_command("ASKING", **target)
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args, **target)
                pipe.execute_command("WAIT", replicas, timeout_ms, **target)
                replies = await pipe.execute(raise_on_error=False, **no_redirects(client))
            reply, acked = replies[-2:]
            if isinstance(reply, NoScriptError):  # failover or restart: load it where the pair goes, retry
                if reloads >= MAX_RELOADS:
                    raise RedisUnavailableError(
                        f"script {name!r} could not be loaded on the node serving its keys (a failover in "
                        f"progress?); retry with the same idempotency key"
                    )
                reloads += 1
                if reloads > 1 and is_cluster(client):
                    await client.initialize()  # the slot map may still name the replaced master
                load_target = {"target_nodes": asking} if asking is not None else node_target(client, keys[0])
                script.sha = str(await client.execute_command("SCRIPT", "LOAD", script.script, **load_target))
                continue
            if isinstance(reply, MovedError | AskError) and redirects < MAX_REDIRECTS:
                redirects += 1
                asking = await redirect(client, reply)
                continue
            if isinstance(reply, TryAgainError) and retries < MAX_TRYAGAIN:
                retries += 1
                await asyncio.sleep(min(0.1, 0.01 * 2**retries))
                asking = None  # ask the slot's owner again: the migration may have finished
                continue
            if isinstance(reply, ResponseError):
                raise translate_script_error(reply) from reply
            if isinstance(reply, Exception):
                raise reply
            if isinstance(acked, ResponseError):
                if _DEMOTED_WAIT.search(str(acked)):
                    # WAIT was interrupted because this master was demoted: the write happened here and is not
                    # confirmed (the caller raises ReplicationNotConfirmedError; a keyed retry reaches the new one).
                    return reply, 0
                if _REPLICA_WAIT.search(str(acked)):
                    # The connection is on a server that became a replica (the script only read: a keyed retry
                    # found its event). Drop idle connections so the retry reconnects to the new master.
                    await _drop_idle_connections(client)
                    raise RedisUnavailableError(
                        "the Redis server is now a replica (failover); retry with the same idempotency key"
                    ) from acked
            if isinstance(acked, Exception):
                raise acked
            return reply, int(acked)


MAX_REDIRECTS = 5
MAX_TRYAGAIN = 20
MAX_RELOADS = 3
_DEMOTED_WAIT = re.compile(r"\bUNBLOCKED\b")
_REPLICA_WAIT = re.compile(r"WAIT cannot be used with replica")


async def _drop_idle_connections(client: RedisClient) -> None:
    """Close the idle pooled connections of a standalone/Sentinel client (a cluster client follows MOVED)."""
    real = await ready(client)
    pool = getattr(real, "connection_pool", None)
    if pool is not None and not is_cluster(real):
        await pool.disconnect(inuse_connections=False)


def no_redirects(client: RedisClient) -> dict[str, Any]:
    """``execute`` kwargs that keep a cluster pipeline from redirecting commands one by one."""
    return {"allow_redirections": False} if is_cluster(client) else {}


async def redirect(client: RedisClient, error: MovedError | AskError) -> Any:
    """Follow a redirect: MOVED updates the client's slot map (returns None), ASK returns the node to ask."""
    if isinstance(error, AskError):
        node = client.get_node(host=error.host, port=error.port)
        if node is None:
            await client.initialize()
            node = client.get_node(host=error.host, port=error.port)
        return node
    await client.nodes_manager.move_slot(error)
    return None


def translate_script_error(exc: ResponseError) -> Exception:
    """Map a script's ``HUDDLE <code> <detail>`` error onto a typed error (others pass through)."""
    match = _ERROR.search(str(exc))
    if match is None:
        original: Exception = exc
        return original
    code, detail = match.group(1), match.group(2)
    if code == "session_not_found":
        return SessionNotFoundError(f"session {detail!r} not found", session_id=detail)
    if code == "session_exists":
        return SessionExistsError(f"session {detail!r} already exists", session_id=detail)
    if code == "session_completed":
        return SessionCompletedError(
            f"session {detail!r} is completed; it accepts no events", session_id=detail
        )
    if code == "not_a_member":
        return NotAMemberError(
            f"agent {detail!r} is not a member of the session; join it first", agent_id=detail
        )
    if code == "sequence_conflict":
        return SequenceConflictError(
            f"expected_seq does not match: the session is at seq {detail}", current_seq=int(detail)
        )
    if code == "state_conflict":
        return StateConflictError(
            f"state transition refused: the session's state is {detail!r}", current_state=detail
        )
    if code == "corrupt":
        key, _, field = detail.rpartition(" ")
        return CorruptSessionDataError(
            f"corrupt session data: field {field!r} of {key!r} holds a value huddle cannot read; nothing was "
            "written",
            key=key,
            field=field,
        )
    return HuddleError(f"script error {code}: {json.dumps(detail)}")
