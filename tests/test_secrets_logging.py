"""Secrets never reach logs: every path that handles a Redis password, ``HUDDLE_PASSWORD``, the health bearer
token or an API token runs with every logger at DEBUG, and neither the captured logs, stdout/stderr, error
messages, reprs nor HTTP responses contain the secret. TLS certificate checks stay on by default."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from huddle import (
    EmbeddedRedis,
    HuddleError,
    SessionManager,
    SessionManagerConfig,
)
from huddle.api.app import create_app
from huddle.api.auth import TokenStore
from huddle.backend.connection import create_client
from huddle.backend.target import client_kwargs
from huddle.health import HealthConfig, SessionHealthCheck

PASSWORD = "Pw-7d1f0c9e-secret"
HEALTH_TOKEN = "hl-token-5b8e2a44"
API_TOKEN = "api-token-0c77e9d1"
SECRETS = (PASSWORD, HEALTH_TOKEN, API_TOKEN)


@pytest.fixture
async def guarded_server() -> AsyncIterator[EmbeddedRedis]:
    """A redis-server that requires PASSWORD (set after start: the start-up probe sends no password)."""
    async with EmbeddedRedis() as server:
        plain = create_client(SessionManagerConfig(redis_url=server.url))
        await plain.config_set("requirepass", PASSWORD)
        await plain.aclose()
        yield server


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger (huddle, redis, httpx, uvicorn...) at DEBUG, captured."""
    caplog.set_level(logging.DEBUG)
    for name in ("huddle", "redis", "httpx", "httpcore", "asyncio", "fastapi", "starlette", "mcp"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield caplog


def _leaks(*texts: str) -> list[str]:
    return [secret for secret in SECRETS for text in texts if secret in text]


async def test_no_secret_in_debug_logs_output_errors_or_responses(
    guarded_server: EmbeddedRedis,
    debug_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[str] = []
    url = f"redis://:{PASSWORD}@127.0.0.1:{guarded_server.port}/0"

    # 1. a password in the URL: connect, write, read, follow, health, close
    config = SessionManagerConfig(redis_url=url, namespace="sec")
    seen += [repr(config), str(config), config.describe_target()]
    async with SessionManager(config) as manager:
        sid = await manager.create_session("a1")
        await manager.emit_event(sid, {"type": "modified"}, "a1")
        async for event in manager.subscribe(sid):
            seen.append(event.model_dump_json())
            break
        seen.append((await manager.health_check()).model_dump_json())

        # 2. the health service with a bearer token, asked with the right and a wrong token
        async with SessionHealthCheck(HealthConfig(check_interval=300, auth_token=HEALTH_TOKEN)) as health:
            await health.initialize(session_manager=manager)
            seen.append(repr(health.config))
            transport = httpx.ASGITransport(app=health.asgi_app())
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for token in (HEALTH_TOKEN, "wrong"):
                    for endpoint in health.get_health_check_endpoints():
                        response = await client.get(
                            endpoint.path, headers={"Authorization": f"Bearer {token}"}
                        )
                        seen.append(response.text)

        # 3. the HTTP API with a configured token, right and wrong
        app = create_app(
            manager, tokens=TokenStore.parse_env(f"admin:root={API_TOKEN}"), mcp=False, console=False
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for token in (API_TOKEN, API_TOKEN + "x", ""):
                    headers = {"Authorization": f"Bearer {token}"}
                    for path in (
                        "/v1/sessions",
                        f"/v1/sessions/{sid}",
                        f"/v1/sessions/{sid}/events",
                        "/openapi.json",
                    ):
                        seen.append((await client.get(path, headers=headers)).text)

    # 4. a wrong password and an unreachable server: the errors say why without the secret
    for bad in (
        f"redis://:{PASSWORD}x@127.0.0.1:{guarded_server.port}/0",
        f"redis://:{PASSWORD}@127.0.0.1:1/0",
    ):
        broken = SessionManagerConfig(redis_url=bad, namespace="sec", retry_attempts=0, connect_timeout=0.5)
        with pytest.raises(HuddleError) as failure:
            async with SessionManager(broken) as manager:
                await manager.create_session("a1")
        seen += [str(failure.value), repr(failure.value), str(failure.value.__cause__)]

    # 5. HUDDLE_PASSWORD from the environment
    monkeypatch.setenv("HUDDLE_REDIS_URL", guarded_server.url)
    monkeypatch.setenv("HUDDLE_PASSWORD", PASSWORD)
    from_env = SessionManagerConfig()
    seen += [repr(from_env), from_env.model_dump_json()]  # password given apart from the URL: a SecretStr
    async with SessionManager(from_env) as manager:
        await manager.create_session("a1")
    raw = create_client(from_env)
    seen.append(repr(raw))
    await raw.aclose()

    # 6. the CLI's config report with the secret in the environment
    from huddle.cli import main

    def run_cli(args: list[str]) -> object:
        try:
            main(args)
        except SystemExit as exc:
            return exc.code
        return 0

    for args in (["config", "validate", "--json"], ["config", "report"]):
        # in a thread: the CLI runs its own event loop (asyncio.run refuses to start inside this test's loop)
        assert await asyncio.to_thread(run_cli, args) in (0, 1)

    out = capsys.readouterr()
    assert "RuntimeError" not in out.err and '"environment"' in out.out, out.err[-500:]  # both reports ran
    logs = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in debug_logs.records)
    assert len(debug_logs.records) > 0, "nothing was logged: the test would prove nothing"
    assert _leaks(logs) == [], "a secret reached the logs"
    assert _leaks(out.out, out.err) == [], "a secret reached stdout/stderr"
    leaked = [text[:300] for text in seen if _leaks(text)]
    assert leaked == [], f"a secret reached a repr, error or response: {leaked}"


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@127.0.0.1:6379/0",
        f"rediss://huddle:{PASSWORD}@127.0.0.1:6380/0",
        f"redis://127.0.0.1:6379/0?password={PASSWORD}&socket_timeout=2",
        f"redis+sentinel://:{PASSWORD}@10.0.0.1:26379,10.0.0.2:26379/mymaster/0",
    ],
)
def test_a_config_dump_masks_the_password_in_the_url(url: str) -> None:
    config = SessionManagerConfig(redis_url=url, password=PASSWORD, sentinel_password=PASSWORD)
    dumps = (config.model_dump_json(), str(config.model_dump()), repr(config), str(config))
    assert _leaks(*dumps) == []
    assert config.redis_url == url  # what the connection code reads stays the real value
    assert config.password is not None and config.password.get_secret_value() == PASSWORD


async def test_a_config_with_a_password_in_the_url_still_connects(guarded_server: EmbeddedRedis) -> None:
    """Masking is serialization only: a manager built from the URL with the password logs in."""
    url = guarded_server.url.replace("redis://", f"redis://:{PASSWORD}@", 1)
    config = SessionManagerConfig(redis_url=url)
    assert PASSWORD not in config.model_dump_json()
    async with SessionManager(config) as manager:
        assert await manager.client.ping()


def test_tls_certificate_checks_are_on_by_default() -> None:
    """A rediss:// URL with no TLS options gets a connection that requires and checks the server certificate."""
    config = SessionManagerConfig(redis_url="rediss://127.0.0.1:6380/0")
    kwargs = client_kwargs(config)
    assert "ssl_cert_reqs" not in kwargs and kwargs["ssl_check_hostname"] is True
    kwargs.pop("retry_on_error")  # what connection.py does too: a pool takes it through the retry settings
    client = aioredis.Redis.from_url(config.redis_url or "", **kwargs)
    connection = client.connection_pool.make_connection()  # built, never connected
    assert connection.ssl_context.cert_reqs == ssl.CERT_REQUIRED
    assert connection.ssl_context.check_hostname is True
