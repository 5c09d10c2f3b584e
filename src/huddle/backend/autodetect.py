"""Cluster auto-detection without blocking the event loop: a client that asks the server on first use.

With ``cluster`` unset, whether to build a ``RedisCluster`` or a plain client depends on the server's answer to
``INFO cluster``. ``create_client`` cannot await, so it returns an :class:`AutoClient`: awaited commands (and the
``*_scan_iter`` generators) first ask the server asynchronously (once per client; while that client is open
the answer is shared, so other clients for the same server are built directly), then run on the right client;
bound methods of the real client are then cached on the proxy, so the hot path pays no indirection. Only
the few synchronous entry points (``pipeline()``, ``pubsub()``, ``is_cluster()``...) used *before* any awaited
command fall back to the old short synchronous probe. ``SessionManager.connect()`` / ``async with`` issue an
awaited PING first, so the usual path never blocks.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from .target import Target, client_kwargs

if TYPE_CHECKING:
    from ..config import RedisSettings

log = logging.getLogger("huddle.backend.connection")

_DETECTED: dict[tuple[Any, ...], tuple[bool, int]] = {}
"""Per server address: whether it runs in cluster mode, and how many open ``AutoClient`` s asked it. An answer
is remembered only while a client that got it is open (a manager and the replay/health/migration clients it
spawns share it); once they are closed the next client asks again, so a port reused by another server (or a
server restarted in the other mode) is never built with a stale answer."""

_NOT_COMMANDS = frozenset({"json", "ft", "ts", "bf", "cf", "cms", "topk", "tdigest", "vset"})
"""Synchronous helpers defined next to the commands (they return objects, not awaitables)."""


def _is_command(name: str) -> bool:
    """True when ``aioredis.Redis.<name>`` returns an awaitable (a command), so it can wait for detection."""
    if name in ("execute_command", "initialize") or name.endswith("_iter"):
        return True
    if name in _NOT_COMMANDS or name.startswith("_"):
        return False
    for klass in aioredis.Redis.__mro__:
        if name in klass.__dict__:
            return callable(klass.__dict__[name]) and klass.__module__.startswith("redis.commands")
    return False


def detection_key(settings: RedisSettings, target: Target) -> tuple[Any, ...]:
    """The server address a detection answer belongs to."""
    return (target.url, settings.host, settings.port, settings.ssl, settings.username)


def known_mode(settings: RedisSettings, target: Target) -> bool | None:
    """The remembered answer for this server (True: cluster), or None when it was never asked."""
    entry = _DETECTED.get(detection_key(settings, target))
    return None if entry is None else entry[0]


def _remember(key: tuple[Any, ...], cluster: bool) -> None:
    _, owners = _DETECTED.get(key, (cluster, 0))
    _DETECTED[key] = (cluster, owners + 1)


def _forget(key: tuple[Any, ...]) -> None:
    entry = _DETECTED.get(key)
    if entry is not None:
        if entry[1] <= 1:
            del _DETECTED[key]
        else:
            _DETECTED[key] = (entry[0], entry[1] - 1)


def _probe_kwargs(settings: RedisSettings) -> dict[str, Any]:
    kwargs = client_kwargs(settings)
    names = ("username", "password", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
    probe = {name: kwargs[name] for name in names if name in kwargs}
    timeout = min(settings.connect_timeout, 2.0)
    probe.update(socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True)
    return probe


def _answer(info: dict[str, Any]) -> bool:
    return bool(info.get("cluster_enabled"))


async def detect_cluster_async(settings: RedisSettings, target: Target) -> bool:
    """Ask the server (``INFO cluster``, awaited) whether it runs in cluster mode, with the bounded retries and
    backoff of commands (``retry_attempts``...): a server still starting, or a cut, does not fail start-up.

    Raises redis-py's connection errors when the server cannot be reached within them (nothing is remembered
    then); a server that refuses ``INFO`` (ACL) counts as standalone: set ``cluster`` explicitly for such users."""
    retry = client_kwargs(settings)["retry"]
    cluster: bool = await retry.call_with_retry(lambda: _probe_once(settings, target), _nothing_to_clean)
    return cluster


async def _nothing_to_clean(error: Exception) -> None:
    """Each probe closes its own connection; nothing to reset between attempts."""


async def _probe_once(settings: RedisSettings, target: Target) -> bool:
    kwargs = _probe_kwargs(settings)
    kwargs["retry"] = AsyncRetry(NoBackoff(), 0)  # the caller retries: no nested attempts
    if target.url:
        probe = aioredis.Redis.from_url(target.url, **kwargs)
    else:
        probe = aioredis.Redis(host=settings.host, port=settings.port, ssl=settings.ssl, **kwargs)
    try:
        try:
            cluster = _answer(await probe.info("cluster"))
        except ResponseError:
            cluster = False
    finally:
        await probe.aclose()
    return cluster


def detect_cluster_blocking(settings: RedisSettings, target: Target) -> bool:
    """The synchronous fallback of :func:`detect_cluster_async` (one short ``INFO cluster``; blocks)."""
    kwargs = _probe_kwargs(settings)
    if target.url:
        probe = redis.Redis.from_url(target.url, **kwargs)
    else:
        probe = redis.Redis(host=settings.host, port=settings.port, ssl=settings.ssl, **kwargs)
    try:
        try:
            cluster = _answer(probe.info("cluster"))
        except ResponseError:
            cluster = False
    except OSError as exc:
        raise RedisConnectionError(f"cannot reach Redis to detect cluster mode: {exc}") from exc
    finally:
        probe.close()
    return cluster


class DeferredScript(AsyncScript):  # type: ignore[misc]
    """A script registered on an ``AutoClient`` before detection: same SHA (UTF-8), runs through the proxy."""

    def __init__(self, owner: AutoClient, script: str | bytes) -> None:
        self.registered_client = owner
        self.script = script
        self.sha = hashlib.sha1(script.encode() if isinstance(script, str) else script).hexdigest()


class AutoClient:
    """Stands in for the redis-py client until the server said whether it is a cluster (see the module doc).

    After detection every attribute is the real client's; ``resolved`` is that client (None before)."""

    def __init__(self, settings: RedisSettings, target: Target, build: Callable[[bool], Any]) -> None:
        self.settings = settings
        self._target = target
        self._build = build
        self._client: Any | None = None
        self._lock: asyncio.Lock | None = None
        self._closed = False
        self._scripts: list[str | bytes] = []

    @property
    def resolved(self) -> Any | None:
        """The real client once detection ran, else None."""
        return self._client

    @property
    def connection_kwargs(self) -> dict[str, Any]:
        """What the real client will connect with (credentials included: used to redact secrets)."""
        return client_kwargs(self.settings)

    def _adopt(self, cluster: bool) -> Any:
        if self._client is None:
            client = self._build(cluster)
            _remember(detection_key(self.settings, self._target), cluster)
            for script in self._scripts:  # the real client learns them too (a cluster loads them per node)
                client.register_script(script)
            self._client = client
        return self._client

    def register_script(self, script: str | bytes) -> AsyncScript:
        """``register_script`` that needs no server (the SHA is computed locally)."""
        if self._client is not None:
            return self._client.register_script(script)
        self._scripts.append(script)
        return DeferredScript(self, script)

    async def resolve(self) -> Any:
        """Detect (awaited, once) and return the real client."""
        if self._client is not None:
            return self._client
        if self._closed:
            raise RedisConnectionError("the client is closed")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                known = known_mode(self.settings, self._target)
                cluster = (
                    known if known is not None else await detect_cluster_async(self.settings, self._target)
                )
                self._adopt(cluster)
        return self._client

    def resolve_blocking(self) -> Any:
        """Detect synchronously (fallback for synchronous entry points used before any awaited command)."""
        if self._client is not None:
            return self._client
        known = known_mode(self.settings, self._target)
        if known is None:
            log.warning(
                "cluster mode detected with a blocking INFO call (a synchronous client method was used before"
                " any awaited command); set cluster=true/false or connect() first to avoid it"
            )
            known = detect_cluster_blocking(self.settings, self._target)
        return self._adopt(known)

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is not None:
            value = getattr(client, name)
            if inspect.ismethod(value) and value.__self__ is client:
                setattr(self, name, value)  # next lookups are plain attribute hits (the emit hot path)
            return value
        if name.startswith("__"):
            raise AttributeError(name)
        if not _is_command(name):
            return getattr(self.resolve_blocking(), name)
        if name.endswith("_iter"):

            async def iterate(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                real = await self.resolve()
                async for item in getattr(real, name)(*args, **kwargs):
                    yield item

            return iterate

        async def deferred(*args: Any, **kwargs: Any) -> Any:
            real = await self.resolve()
            result = getattr(real, name)(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return deferred

    async def aclose(self, *args: Any, **kwargs: Any) -> None:
        """Close the real client if one was built (idempotent)."""
        client = self._client
        if client is not None and not self._closed:
            _forget(detection_key(self.settings, self._target))
        self._closed = True
        if client is not None:
            await client.aclose(*args, **kwargs)

    async def __aenter__(self) -> AutoClient:
        await self.resolve()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
