"""Where the settings point (standalone, Cluster or Sentinel; URL split into what redis-py takes) and the client
options they imply (TLS, ACL user, timeouts, retries). No connection is made here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..config import RedisSettings
from ..errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}


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
    if uses_tls(settings):
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            value = getattr(settings, name)
            if value is not None:
                kwargs[name] = value
        kwargs["ssl_check_hostname"] = settings.ssl_check_hostname
    return kwargs


def uses_tls(settings: RedisSettings) -> bool:
    """True for ``ssl=True`` or a ``rediss://`` / ``rediss+sentinel://`` URL."""
    return settings.ssl or (settings.redis_url or "").startswith("rediss")


@dataclass(frozen=True, slots=True)
class Target:
    """What ``settings`` point at, with the URL split into what redis-py understands."""

    mode: str
    """``standalone``, ``cluster`` or ``sentinel`` (``auto`` until the server was asked)."""
    url: str | None = None
    """The URL without huddle's own query options (``cluster``)."""
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":") if ":" in text else (text.strip(), "", "")
    try:
        return host or "127.0.0.1", int(port) if port else default_port
    except ValueError:
        raise ConfigError(f"bad host:port {text!r}") from None


def _sentinel_target(url: str) -> Target:
    """``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    path = [segment for segment in parts.path.split("/") if segment]
    if not hosts or not path:
        raise ConfigError(f"sentinel URL needs hosts and a service name: {url.split('@')[-1]!r}")
    if len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigError(f"sentinel URL path must be /<service>[/<db>], got {parts.path!r}")
    return Target(
        mode="sentinel",
        sentinels=tuple(_host_port(host, 26379) for host in hosts.split(",")),
        service=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=unquote(username) or None,
        password=unquote(password) or None,
    )


def resolve_target(settings: RedisSettings) -> Target:
    """Where the settings point and in which mode (``auto`` when the server must be asked)."""
    url = settings.redis_url
    if url and "+sentinel://" in url:
        return _sentinel_target(url)
    if settings.sentinels:
        return Target(
            mode="sentinel",
            sentinels=tuple(_host_port(host, 26379) for host in settings.sentinels.split(",")),
            service=settings.sentinel_service,
            db=settings.db,
        )
    cluster = settings.cluster
    if url:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        for name, value in query:
            if name == "cluster":
                cluster = value.lower() in _TRUE
        kept = urlencode([(name, value) for name, value in query if name != "cluster"])
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, kept, parts.fragment))
    mode = "auto" if cluster is None else "cluster" if cluster else "standalone"
    return Target(mode=mode, url=url, db=settings.db)
