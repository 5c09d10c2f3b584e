"""Lua scripts: loaded from ``scripts/*.lua`` once, called by SHA (reloaded after NOSCRIPT)."""

from __future__ import annotations

import asyncio
import json
import re
from functools import cache
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import AskError, MovedError, NoScriptError, ResponseError, TryAgainError

from ...backend.connection import RedisClient, is_cluster, node_target
from ...errors import (
    HuddleError,
    NotAMemberError,
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


@cache
def script_source(name: str) -> str:
    """The full source of script ``name`` (common helpers + the script body)."""
    return lua_file("common") + "\n" + lua_file(name)


class Scripts:
    """The session scripts registered on one client."""

    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(script_source(name)) for name in SCRIPT_NAMES
        }

    async def load(self, client: RedisClient) -> None:
        """SCRIPT LOAD every script (optional: calls load them on demand after NOSCRIPT)."""
        for script in self._scripts.values():
            script.sha = await client.script_load(script.script)

    async def loaded(self, client: RedisClient) -> bool:
        """True if the server has every script cached."""
        shas = [script.sha for script in self._scripts.values()]
        return all(await client.script_exists(*shas))

    async def run(self, name: str, keys: list[str], args: list[str | int]) -> Any:
        """Run a script; a ``HUDDLE <code>`` error reply becomes the matching ``HuddleError``."""
        # EVALSHA straight on the client (what AsyncScript.__call__ does, minus its per-call pipeline check and
        # argument copies): this is the path of every emitted event.
        script = self._scripts[name]
        try:
            try:
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:  # the server restarted or failed over: load the script again, retry once
                script.sha = await self._client.script_load(script.script)
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)
        except ResponseError as exc:
            raise translate_script_error(exc) from exc

    async def run_and_wait(
        self,
        client: RedisClient,
        name: str,
        keys: list[str],
        args: list[str | int],
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
        reloaded, redirects, retries, asking = False, 0, 0, None
        while True:
            target = {"target_nodes": asking} if asking is not None else node_target(client, keys[0])
            async with client.pipeline(transaction=False) as pipe:
                if asking is not None:
                    pipe.execute_command("ASKING", **target)
                pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args, **target)
                pipe.execute_command("WAIT", replicas, timeout_ms, **target)
                replies = await pipe.execute(raise_on_error=False, **no_redirects(client))
            reply, acked = replies[-2:]
            if isinstance(reply, NoScriptError) and not reloaded:
                script.sha = await client.script_load(script.script)  # failover or restart: reload, retry
                reloaded = True
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
            if isinstance(acked, Exception):
                raise acked
            return reply, int(acked)


MAX_REDIRECTS = 5
MAX_TRYAGAIN = 20


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
    return HuddleError(f"script error {code}: {json.dumps(detail)}")
