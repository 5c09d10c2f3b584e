"""``huddle serve``: the HTTP API (``/v1``, SSE, MCP, console) and the health endpoints over uvicorn.

SIGTERM/SIGINT go through ``SessionGracefulShutdown``: stop accepting, end streams with a retry hint, finish
in-flight requests, checkpoint the sessions this process served, exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
import uvicorn
from rich.markup import escape

from ..api import StreamSettings, TokenStore, create_app
from ..api.streams import StreamService
from ..core.manager import SessionManager
from ..errors import ConfigError, RedisUnavailableError
from ..health import Alert, HealthConfig, SessionHealthCheck
from ..replay import SessionReplay
from ..shutdown import SessionGracefulShutdown, ShutdownConfig
from .common import err_console, redis_config

log = logging.getLogger("huddle.serve")

SERVER_GRACE = 5.0
"""Seconds uvicorn gives open connections (e.g. MCP streams) to finish once it stops accepting."""


class ApiServer(uvicorn.Server):
    """uvicorn's server without its own signal handling: the graceful shutdown owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpControl:
    """The HTTP server as a graceful-shutdown component: stop accepting and end streams, then finish."""

    def __init__(self, server: ApiServer, streams: StreamService) -> None:
        self.server = server
        self.streams = streams
        self.task: asyncio.Task[None] | None = None

    def stop_accepting(self, reason: str) -> None:
        """Close the listening socket (uvicorn's exit flag) and end every live stream with a retry hint."""
        log.info("stopping the HTTP server: %s", reason)
        self.streams.close_all()
        self.server.should_exit = True

    async def close(self) -> None:
        """Wait until uvicorn has finished the requests in flight (forced if the shutdown is cancelled)."""
        self.server.should_exit = True
        if self.task is None:
            return
        try:
            await asyncio.shield(self.task)
        except asyncio.CancelledError:
            self.server.force_exit = True
            raise


def print_alert(alert: Alert, redact: Callable[[str], str]) -> None:
    """One line on stderr per alert transition (secrets masked)."""
    colour = "green" if alert.resolved else "yellow" if alert.level == "warning" else "red"
    err_console.print(f"[{colour}]alert[/] {escape(redact(alert.message))}")


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def run_service(
    host: str,
    port: int,
    health_config: HealthConfig,
    log_level: str,
    *,
    tokens: TokenStore | None = None,
    streams: StreamSettings | None = None,
    max_body_bytes: int = 1024 * 1024,
) -> int:
    """Serve the API and health endpoints for the configured Redis until a signal; returns the exit code."""
    code = 0
    async with redis_config() as config:
        manager = SessionManager(config)
        try:
            await manager.connect()
        except RedisUnavailableError as exc:  # serve anyway: /health says down until Redis answers
            err_console.print(f"[yellow]warning[/] Redis is not reachable yet: {exc}")
        health = SessionHealthCheck(health_config)
        health.add_alert_callback(lambda alert: print_alert(alert, health.redact))
        replay = SessionReplay(manager)
        shutdown = SessionGracefulShutdown(ShutdownConfig())
        try:
            await health.initialize(session_manager=manager, session_replay=replay)
            app = create_app(
                manager,
                tokens=tokens,
                replay=replay,
                health=health,
                streams=streams,
                max_body_bytes=max_body_bytes,
            )
            server = ApiServer(
                uvicorn.Config(
                    app,
                    host=host,
                    port=port,
                    log_level=log_level,
                    lifespan="on",
                    access_log=False,
                    # huddle never uses the client address (no access log), so X-Forwarded-* need no
                    # parsing on every request; no "server: uvicorn" header either.
                    proxy_headers=False,
                    server_header=False,
                    timeout_graceful_shutdown=int(SERVER_GRACE),
                )
            )
            control = HttpControl(server, app.state.huddle.streams)
            await shutdown.initialize(
                session_manager=manager, session_replay=replay, health_check=health, http_server=control
            )
            err_console.print(
                f"[dim]huddle API on http://{host}:{port}/v1 (health /health, console /ui, MCP /mcp; "
                f"Redis {config.describe_target()})[/]"
            )
            control.task = serving = asyncio.create_task(server.serve())
            waiting = asyncio.create_task(shutdown.wait())
            done, _ = await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if waiting in done or shutdown.get_shutdown_status() is not None:
                code = (await waiting).exit_code  # uvicorn may finish first: the shutdown stopped it
            else:  # uvicorn stopped by itself (e.g. the port is taken): shut down the rest the same way
                waiting.cancel()
                await shutdown.shutdown("the HTTP server stopped")
                code = 1
            server.should_exit = True
            try:
                async with asyncio.timeout(SERVER_GRACE + 1):
                    await serving
            except TimeoutError:
                server.force_exit = True
        finally:
            await shutdown.close()
            await replay.close()
            await health.close()
            await manager.close()
    err_console.print("[dim]huddle serve stopped[/]")
    return code


def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="TCP port."),
    check_interval: float | None = typer.Option(
        None,
        "--check-interval",
        help="Seconds between health checks [default: HUDDLE_HEALTH_CHECK_INTERVAL or 30].",
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="HUDDLE_HEALTH_AUTH_TOKEN",
        show_envvar=True,
        help="Bearer token required by every health endpoint except /livez and /readyz.",
    ),
    tokens_file: Path | None = typer.Option(  # noqa: B008
        None,
        "--tokens-file",
        envvar="HUDDLE_API_TOKENS_FILE",
        show_envvar=True,
        help="TOML file of API tokens ([[tokens]] role, agent_id/name, sha256 or token); "
        "HUDDLE_API_TOKENS adds role[:name]=token entries.",
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="Allow a non-loopback --host without API tokens (everyone is admin)."
    ),
    max_body_bytes: int = typer.Option(1024 * 1024, "--max-body-bytes", min=1024, help="Request body limit."),
    max_streams: int = typer.Option(1000, "--max-streams", min=1, help="Live SSE streams at once."),
    heartbeat: float = typer.Option(
        15.0, "--sse-heartbeat", min=0.05, help="Seconds between SSE heartbeats."
    ),
    sse_buffer: int = typer.Option(
        1024, "--sse-buffer", min=1, help="Events a stream may queue before a slow reader is closed."
    ),
    coalesce_ms: float = typer.Option(
        5.0,
        "--sse-coalesce-ms",
        min=0,
        help="Live events within this window are written to a stream together.",
    ),
    coalesce_max_ms: float = typer.Option(
        25.0,
        "--sse-coalesce-max-ms",
        min=0,
        help="The widest window: past --sse-coalesce-ms it grows by 10 µs per stream following a session.",
    ),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve the HTTP API under /v1 (with SSE streams, /openapi.json, /mcp, /ui) and /health, /metrics."""
    overrides: dict[str, object] = {}
    if check_interval is not None:
        overrides["check_interval"] = check_interval
    if token:
        overrides["auth_token"] = token
    health_config = HealthConfig(**overrides)  # type: ignore[arg-type]
    tokens = TokenStore.from_env(tokens_file)
    if not tokens.configured:
        if not is_loopback(host) and not insecure:
            raise ConfigError(
                f"no API tokens are configured: refusing to serve on {host} (set HUDDLE_API_TOKENS or "
                "--tokens-file, or pass --insecure to let anyone who can connect act as admin)"
            )
        err_console.print("[yellow]note[/] no API tokens configured: every caller is an admin"
                          + ("" if insecure and not is_loopback(host) else "; serving on loopback only"))  # fmt: skip
    settings = StreamSettings(
        heartbeat=heartbeat,
        buffer_events=sse_buffer,
        max_streams=max_streams,
        coalesce_ms=coalesce_ms,
        coalesce_max_ms=coalesce_max_ms,
    )
    run = asyncio.run
    try:
        import uvloop  # the [fast] extra: a faster event loop for the server

        run = uvloop.run
    except ImportError:
        pass
    code = run(
        run_service(
            host,
            port,
            health_config,
            log_level,
            tokens=tokens,
            streams=settings,
            max_body_bytes=max_body_bytes,
        )
    )
    if code:
        raise typer.Exit(code)
