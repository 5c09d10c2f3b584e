"""Build the redis-py asyncio client from settings: standalone, Sentinel or Cluster; TLS; ACL user; retries.

Whatever the topology, the caller gets an object with the ``redis.asyncio.Redis`` command API (commands, pipelines,
scripts, pub/sub, ``aclose``); the few places that must act differently on a cluster ask ``is_cluster``.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, TypeAlias
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from ..config import RedisSettings
from ..errors import ConfigError
from .autodetect import AutoClient, detect_cluster_blocking, known_mode
from .autopipeline import AutoPipelineRedis
from .cluster_pipeline import FALL_BACK as CLUSTER_FALL_BACK
from .cluster_pipeline import ClusterBatchers
from .target import Target, client_kwargs, resolve_target, uses_tls

__all__ = ["RedisClient", "Target", "client_kwargs", "create_client", "resolve_target", "uses_tls"]

RedisClient: TypeAlias = Any
"""A ``redis.asyncio.Redis`` or ``RedisCluster`` (decoding responses); typed loosely so both fit."""


def detect_cluster(settings: RedisSettings, target: Target) -> bool:
    """Ask the server whether it runs in cluster mode (one short *synchronous* ``INFO cluster``).

    An unreachable server counts as standalone. ``create_client`` no longer calls this: it detects
    asynchronously on first use (``huddle.backend.autodetect``); kept for synchronous callers."""
    try:
        return detect_cluster_blocking(settings, target)
    except (redis.RedisError, OSError):
        return False


# -- the clients ----------------------------------------------------------------------------------------------
def create_client(settings: RedisSettings, *, decode_responses: bool = True) -> RedisClient:
    """A new client (with its own pools) for the Redis that ``settings`` describe.

    Pools block (up to ``pool_timeout``) when all ``max_connections`` are busy instead of failing, so a burst
    of concurrent operations queues rather than raising; on a cluster the limit holds per client."""
    target = resolve_target(settings)
    mode = target.mode
    if mode == "auto":
        known = known_mode(settings, target)
        if known is None:  # ask the server on first use, asynchronously (see huddle.backend.autodetect)
            return AutoClient(
                settings, target, lambda cluster: _build_client(settings, target, cluster, decode_responses)
            )
        mode = "cluster" if known else "standalone"
    return _build_client(settings, target, mode == "cluster", decode_responses, sentinel=mode == "sentinel")


def _build_client(
    settings: RedisSettings, target: Target, cluster: bool, decode_responses: bool, *, sentinel: bool = False
) -> RedisClient:
    kwargs = client_kwargs(settings, decode_responses=decode_responses)
    mode = "sentinel" if sentinel else "cluster" if cluster else "standalone"
    if mode == "sentinel":
        return _sentinel_client(settings, target, kwargs)
    if mode == "cluster":
        return _cluster_client(settings, target, kwargs)
    pool_kwargs = {"max_connections": settings.max_connections, "timeout": settings.pool_timeout}
    kwargs.pop("retry_on_error", None)  # a pool takes it via the connection's retry settings
    if target.url:
        pool = aioredis.BlockingConnectionPool.from_url(target.url, **pool_kwargs, **kwargs)
    else:
        if settings.ssl:
            kwargs["connection_class"] = aioredis.SSLConnection
        pool = aioredis.BlockingConnectionPool(
            host=settings.host, port=settings.port, db=settings.db, **pool_kwargs, **kwargs
        )
    client = AutoPipelineRedis.from_pool(pool)
    if settings.auto_pipeline:
        client.enable_auto_pipeline()
    return client


_GATED = contextvars.ContextVar("huddle_cluster_gated", default=False)


class GatedRedisCluster(RedisCluster):  # type: ignore[misc]
    """``RedisCluster`` whose commands and pipelines queue for one of ``max_connections`` slots.

    redis-py's cluster nodes raise ``MaxConnectionsError`` (a connection error that also triggers a topology
    refresh) when a burst exceeds the per-node pool; gating keeps bursts queued like the standalone pool does.
    Calls made while a slot is held (redirect handling inside a pipeline) pass straight through."""

    def __init__(self, *args: Any, gate: int = 64, auto_pipeline: bool = False, **kwargs: Any) -> None:
        import asyncio

        super().__init__(*args, **kwargs)
        self.huddle_gate = asyncio.Semaphore(gate)
        self.huddle_scripts: dict[str, Any] = {}  # sha -> source of every script registered on this client
        self.huddle_batchers = ClusterBatchers(self) if auto_pipeline else None

    def register_script(self, script: Any) -> Any:
        registered = super().register_script(script)
        self.huddle_scripts[registered.sha] = script
        return registered

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if _GATED.get():
            return await super().execute_command(*args, **kwargs)
        batchers = self.huddle_batchers
        batcher = batchers.for_call(args, kwargs) if batchers is not None else None
        if batcher is not None:
            try:
                return await batcher.submit(args, kwargs)
            except CLUSTER_FALL_BACK:
                pass  # redirected, or the node is unreachable: redis-py's cluster path sorts it out
        task = asyncio.current_task()
        before = task.cancelling() if task is not None else 0
        async with self.huddle_gate:
            token = _GATED.set(True)
            try:
                reply = await super().execute_command(*args, **kwargs)
            finally:
                _GATED.reset(token)
        if task is not None and task.cancelling() > before:
            raise asyncio.CancelledError  # swallowed by redis-py's wait_for on Python 3.11 (see autopipeline)
        return reply

    async def aclose(self, *args: Any, **kwargs: Any) -> None:
        if self.huddle_batchers is not None:
            self.huddle_batchers.reset()
        await super().aclose(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)
        return GatedClusterPipeline(self, transaction)


class GatedClusterPipeline(ClusterPipeline):  # type: ignore[misc]
    """A cluster pipeline that holds one slot of its client's gate while it executes.

    It also accepts registered scripts (``await script(keys=..., client=pipe)``), which redis-py blocks in
    cluster pipelines: each call is queued as ``EVALSHA`` to the node of its keys' slot (huddle's scripts touch
    one slot), and, like redis-py's standalone pipeline, the scripts are loaded where missing (every primary)
    before the pipeline runs."""

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> ClusterPipeline:
        # A coroutine (AsyncScript awaits the call): awaiting the pipeline itself would empty its queue.
        self.__dict__.setdefault("huddle_shas", set()).add(sha)
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    async def _load_scripts(self) -> None:
        shas = sorted(self.__dict__.pop("huddle_shas", ()))
        sources = getattr(self.cluster_client, "huddle_scripts", {})
        if not shas:
            return
        for sha, there in zip(shas, await self.cluster_client.script_exists(*shas), strict=True):
            if not there and sha in sources:
                await self.cluster_client.script_load(sources[sha])

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        await self._load_scripts()
        gate = getattr(self.cluster_client, "huddle_gate", None)
        if gate is None or _GATED.get():
            return _unless_cancelled(list(await super().execute(raise_on_error, allow_redirections)))
        async with gate:
            token = _GATED.set(True)
            try:
                return _unless_cancelled(list(await super().execute(raise_on_error, allow_redirections)))
            finally:
                _GATED.reset(token)


def _unless_cancelled(replies: list[Any]) -> list[Any]:
    """Re-raise a cancellation redis-py's cluster pipeline swallowed (redis-py 8.1: a task cancelled while its
    pipeline runs gets the replies instead of ``CancelledError``, so a loop would go on after ``cancel()``)."""
    import asyncio

    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    return replies


def _cluster_client(settings: RedisSettings, target: Target, kwargs: dict[str, Any]) -> RedisClient:
    kwargs = dict(kwargs)
    # Headroom over the gate: pipelines use one connection per node they touch, redirects one more.
    kwargs.update(
        max_connections=settings.max_connections * 2,
        require_full_coverage=False,
        gate=settings.max_connections,
        auto_pipeline=settings.auto_pipeline,
    )
    if target.url:
        parts = urlsplit(target.url)
        if parts.scheme == "rediss":
            kwargs["ssl"] = True
        if parts.username:
            kwargs["username"] = unquote(parts.username)
        if parts.password:
            kwargs["password"] = unquote(parts.password)
        db = parts.path.strip("/")
        if db not in ("", "0"):
            raise ConfigError(f"Redis Cluster has only database 0, the URL asks for /{db}")
        return GatedRedisCluster(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, **kwargs)
    if settings.db:
        raise ConfigError(f"Redis Cluster has only database 0, settings ask for db={settings.db}")
    return GatedRedisCluster(host=settings.host, port=settings.port, ssl=settings.ssl, **kwargs)


class BlockingSentinelConnectionPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):  # type: ignore[misc]
    """Sentinel-managed pool (finds the current master) that queues callers when all connections are busy."""


class SentinelRedis(AutoPipelineRedis):
    """A client of the Sentinel-managed master; ``aclose`` also closes the connections to the sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        await super().aclose(close_connection_pool)
        if manager is not None:
            for sentinel in manager.sentinels:
                await sentinel.aclose()


def _sentinel_client(settings: RedisSettings, target: Target, kwargs: dict[str, Any]) -> RedisClient:
    kwargs = dict(kwargs)
    kwargs.pop("retry_on_error", None)
    if target.username is not None:
        kwargs["username"] = target.username
    if target.password is not None:
        kwargs["password"] = target.password
    tls = uses_tls(settings)
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "decode_responses": True,
    }
    if settings.sentinel_username is not None:
        sentinel_kwargs["username"] = settings.sentinel_username
    if settings.sentinel_password is not None:
        sentinel_kwargs["password"] = settings.sentinel_password.get_secret_value()
    if tls:
        sentinel_kwargs["ssl"] = True
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"):
            if name in kwargs:
                sentinel_kwargs[name] = kwargs[name]
    manager = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)
    client = manager.master_for(
        target.service or "",
        redis_class=SentinelRedis,
        connection_pool_class=BlockingSentinelConnectionPool,
        db=target.db,
        ssl=tls,
        max_connections=settings.max_connections,
        timeout=settings.pool_timeout,
        **kwargs,
    )
    if settings.auto_pipeline:
        client.enable_auto_pipeline()
    return client


# -- what the rest of the code may ask ------------------------------------------------------------------------
async def ready(client: RedisClient) -> RedisClient:
    """The real redis-py client behind ``client`` (detects cluster mode first, awaited, for an ``AutoClient``)."""
    if isinstance(client, AutoClient):
        return await client.resolve()
    return client


def _real(client: RedisClient) -> RedisClient:
    if isinstance(client, AutoClient):
        return client.resolve_blocking()  # instant once detected; await ready(client) first to never block
    return client


def is_cluster(client: RedisClient) -> bool:
    """True for a Redis Cluster client."""
    return isinstance(_real(client), RedisCluster)


def topology(client: RedisClient) -> str:
    """``cluster``, ``sentinel`` or ``standalone``."""
    client = _real(client)
    if is_cluster(client):
        return "cluster"
    if isinstance(getattr(client, "connection_pool", None), SentinelConnectionPool):
        return "sentinel"
    return "standalone"


def node_target(client: RedisClient, key: str) -> dict[str, Any]:
    """Extra command kwargs that send a keyless command (``WAIT``) to the node serving ``key``."""
    client = _real(client)
    if is_cluster(client):
        return {"target_nodes": client.get_node_from_key(key)}
    return {}


async def primary_infos(client: RedisClient, section: str | None = None) -> dict[str, Any]:
    """``INFO`` of every primary, by node name (``host:port``); the one server's under ``""`` when not a cluster.

    On a cluster each primary is asked on its own connection; a node that fails to answer maps to its error
    (the call raises only when no primary answered)."""
    import asyncio

    client = await ready(client)
    args = [section] if section else []
    if not is_cluster(client):
        return {"": await client.info(*args)}
    await client.initialize()
    primaries = list(client.get_primaries())

    async def one(node: Any) -> Any:
        try:
            return await node.execute_command("INFO", *args)
        except (redis.RedisError, OSError) as exc:
            return exc

    replies = await asyncio.gather(*(one(node) for node in primaries))
    if replies and all(isinstance(reply, BaseException) for reply in replies):
        raise replies[0]
    return {str(node.name): reply for node, reply in zip(primaries, replies, strict=True)}


async def server_version(client: RedisClient) -> tuple[int, ...]:
    """The lowest ``redis_version`` among the primaries that answer (``(major, minor, patch)``).

    A cluster primary that is down does not fail the call (it raises only when none answers)."""
    infos = await primary_infos(client, "server")
    versions = [str(info["redis_version"]) for info in infos.values() if not isinstance(info, BaseException)]
    return min(tuple(int(part) for part in version.split(".")[:3] if part.isdigit()) for version in versions)
