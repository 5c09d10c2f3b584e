"""The Redis error boundary: redis-py's exceptions become huddle's typed errors (outage, ACL refusal, data of the
wrong type). ``core.store`` re-exports these names (most callers import them from there)."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    ClusterError,
    CrossSlotTransactionError,
    NoPermissionError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import CorruptSessionDataError, RedisPermissionError, RedisUnavailableError

P = ParamSpec("P")
T = TypeVar("T")

# Cluster errors are transient too: a failed master before its replica takes over (CLUSTERDOWN, MASTERDOWN,
# uncovered slot), a multi-key script during a slot migration (TRYAGAIN), no reachable node at all, and redis-py
# giving up after its redirect/retry budget while a slot moves (ClusterError "TTL exhausted").
REDIS_DOWN = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionResetError,
    OSError,
    ClusterDownError,
    TryAgainError,
    RedisClusterException,
    ClusterError,
)
_NOPERM = re.compile(r"NOPERM|no permissions|can't run this command|permissions to access", re.IGNORECASE)
# "Command # 1 (HGETALL huddle:{s-1}:meta) of pipeline caused error: WRONGTYPE ..." names the key; a script's
# WRONGTYPE does not.
_WRONGTYPE_KEY = re.compile(r"\(\w+ ([^ )]+)")


def wrong_type_error(exc: ResponseError) -> CorruptSessionDataError | None:
    """A ``CorruptSessionDataError`` if ``exc`` is a WRONGTYPE reply (a huddle key holds another type), or an
    XADD refused because the meta seq a script appends after is not above the log's last entry."""
    text = str(exc)
    if "The ID specified in XADD" in text:  # a script's first write: refused, so nothing was written
        return CorruptSessionDataError(
            f"the session's stored seq does not match its event log; the data is corrupt and nothing was "
            f"written: {text.splitlines()[0][:160]}",
            field="seq",
        )
    if "WRONGTYPE" not in text:
        return None
    match = _WRONGTYPE_KEY.search(text)
    key = match.group(1) if match else ""
    session_id = key[key.find("{") + 1 : key.find("}")] if "{" in key and "}" in key else ""
    return CorruptSessionDataError(
        f"a key{f' ({key})' if key else ''} of session data holds the wrong Redis type; the data is corrupt "
        f"and nothing was written: {text.splitlines()[0][:160]}",
        session_id=session_id, key=key, field="",
    )  # fmt: skip


def permission_error(exc: BaseException) -> RedisPermissionError | None:
    """A ``RedisPermissionError`` if ``exc`` is an ACL refusal (NOPERM, also inside a script) or a failed login."""
    if isinstance(exc, AuthenticationError):
        return RedisPermissionError(f"Redis refused the login: {exc}")
    if isinstance(exc, NoPermissionError) or (isinstance(exc, ResponseError) and _NOPERM.search(str(exc))):
        return RedisPermissionError(
            f"the Redis user lacks a permission huddle needs (see huddle.backend.acl for the rules): {exc}"
        )
    return None


def boundary_error(exc: BaseException) -> BaseException | None:
    """What ``redis_boundary`` raises instead of ``exc`` (None: re-raise ``exc`` as it is)."""
    if isinstance(exc, AuthenticationError | ResponseError):
        denied = permission_error(exc)
        if denied is not None:
            return denied
        if isinstance(exc, REDIS_DOWN):
            return RedisUnavailableError(f"Redis is unavailable: {exc}")
        return wrong_type_error(exc) if isinstance(exc, ResponseError) else None
    if isinstance(exc, REDIS_DOWN) and not isinstance(exc, CrossSlotTransactionError):
        # CrossSlotTransactionError: a bug (keys of several slots in one MULTI), not an outage
        return RedisUnavailableError(f"Redis is unavailable: {exc}")
    return None


def redis_boundary(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Convert redis-py connection failures (after its bounded retries) into ``RedisUnavailableError``,
    ACL refusals into ``RedisPermissionError`` and WRONGTYPE replies into ``CorruptSessionDataError``."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await func(*args, **kwargs)
        except (AuthenticationError, ResponseError, *REDIS_DOWN) as exc:
            converted = boundary_error(exc)
            if converted is None:
                raise
            raise converted from exc

    return wrapper
