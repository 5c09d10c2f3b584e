"""Build the redis-py asyncio client from settings (retries with backoff, TLS, ACL user)."""

from __future__ import annotations

from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .config import RedisSettings

RedisClient: TypeAlias = Any
"""A ``redis.asyncio.Redis`` (decoding responses); typed loosely so cluster clients fit too."""


def client_kwargs(settings: RedisSettings, *, decode_responses: bool = True) -> dict[str, Any]:
    """Keyword arguments for ``redis.asyncio.Redis`` derived from ``settings``."""
    retry = Retry(
        ExponentialWithJitterBackoff(cap=settings.retry_backoff_cap, base=settings.retry_backoff_base),
        settings.retry_attempts,
        supported_errors=(RedisConnectionError, RedisTimeoutError, ConnectionResetError, OSError),
    )
    kwargs: dict[str, Any] = {
        "decode_responses": decode_responses,
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "retry": retry,
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, ConnectionResetError, OSError],
        "health_check_interval": 0,
        "client_name": "huddle",
    }
    if settings.username is not None:
        kwargs["username"] = settings.username
    if settings.password is not None:
        kwargs["password"] = settings.password.get_secret_value()
    tls = settings.ssl or (settings.redis_url or "").startswith("rediss://")
    if tls:
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            value = getattr(settings, name)
            if value is not None:
                kwargs[name] = value
    return kwargs


def create_client(settings: RedisSettings, *, decode_responses: bool = True) -> RedisClient:
    """A new client (with its own pool) for the Redis that ``settings`` describe.

    The pool blocks (up to ``pool_timeout``) when all ``max_connections`` are busy instead of failing, so a burst
    of concurrent operations queues rather than raising."""
    kwargs = client_kwargs(settings, decode_responses=decode_responses)
    pool_kwargs = {"max_connections": settings.max_connections, "timeout": settings.pool_timeout}
    kwargs.pop("retry_on_error", None)  # a pool takes it via the connection's retry settings
    if settings.redis_url:
        pool = aioredis.BlockingConnectionPool.from_url(settings.redis_url, **pool_kwargs, **kwargs)
    else:
        if settings.ssl:
            kwargs["connection_class"] = aioredis.SSLConnection
        pool = aioredis.BlockingConnectionPool(
            host=settings.host, port=settings.port, db=settings.db, **pool_kwargs, **kwargs
        )
    return aioredis.Redis.from_pool(pool)
