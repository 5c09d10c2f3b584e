"""``huddle serve``: the health endpoints and Prometheus metrics over HTTP (uvicorn); SIGTERM exits cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator

import typer
import uvicorn
from rich.markup import escape

from ..core.manager import SessionManager
from ..errors import RedisUnavailableError
from ..health import Alert, HealthConfig, SessionHealthCheck
from .common import err_console, redis_config

log = logging.getLogger("huddle.serve")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class HealthServer(uvicorn.Server):
    """uvicorn's server, but a signal only asks it to stop (uvicorn re-raises it after serving, which would
    kill the process before huddle closes its connections); a second signal stops at once."""

    def __init__(self, config: uvicorn.Config, on_signal: Callable[[int], None]) -> None:
        super().__init__(config)
        self._on_signal = on_signal

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._handle, sig)
        try:
            yield
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)

    def _handle(self, sig: int) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True
        self._on_signal(sig)


def print_alert(alert: Alert, redact: Callable[[str], str]) -> None:
    """One line on stderr per alert transition (secrets masked)."""
    colour = "green" if alert.resolved else "yellow" if alert.level == "warning" else "red"
    err_console.print(f"[{colour}]alert[/] {escape(redact(alert.message))}")


async def run_service(host: str, port: int, health_config: HealthConfig, log_level: str) -> None:
    """Serve the health app for the configured Redis until a signal arrives, then close everything."""
    async with redis_config() as config:
        manager = SessionManager(config)
        try:
            await manager.connect()
        except RedisUnavailableError as exc:  # serve anyway: /health says down until Redis answers
            err_console.print(f"[yellow]warning[/] Redis is not reachable yet: {exc}")
        health = SessionHealthCheck(health_config)
        health.add_alert_callback(lambda alert: print_alert(alert, health.redact))
        try:
            await health.initialize(session_manager=manager)

            def stop(sig: int) -> None:
                health.mark_not_ready(f"received {signal.Signals(sig).name}")

            server = HealthServer(
                uvicorn.Config(
                    health.asgi_app(),
                    host=host,
                    port=port,
                    log_level=log_level,
                    lifespan="off",
                    access_log=False,
                ),
                on_signal=stop,
            )
            err_console.print(
                f"[dim]huddle health service on http://{host}:{port} (Redis {config.describe_target()})[/]"
            )
            await server.serve()
        finally:
            await health.close()
            await manager.close()
    err_console.print("[dim]huddle serve stopped[/]")


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
        help="Bearer token required by every endpoint except /livez and /readyz.",
    ),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve /health, /health/*, /livez, /readyz and Prometheus /metrics for HUDDLE_REDIS_URL (or embedded)."""
    overrides: dict[str, object] = {}
    if check_interval is not None:
        overrides["check_interval"] = check_interval
    if token:
        overrides["auth_token"] = token
    health_config = HealthConfig(**overrides)  # type: ignore[arg-type]
    asyncio.run(run_service(host, port, health_config, log_level))
