"""The health endpoints as a Starlette (ASGI) app: JSON in the IETF health-check format, Prometheus text."""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..models import SessionStats
from .checkset import UNREACHABLE
from .config import HealthConfig
from .process import ProcessMonitor
from .prometheus import CONTENT_TYPE
from .redact import Redactor
from .report import HealthCheckEndpoint, HealthReport, MetricsReport, Readiness, http_status, ietf_status


class HealthSource(Protocol):
    """What the endpoints read (a ``SessionHealthCheck``)."""

    config: HealthConfig
    process: ProcessMonitor
    redact: Redactor

    async def get_health_status(self, *, refresh: bool = False) -> HealthReport: ...
    def metrics(self) -> MetricsReport: ...
    def prometheus(self) -> bytes: ...
    async def session_stats(self) -> SessionStats | None: ...
    async def check_readiness(self) -> Readiness: ...
    def to_json(self, value: Any) -> str: ...


HEALTH_JSON = "application/health+json"
JSON = "application/json"
Handler = Callable[[Request], Awaitable[Response]]

_ENDPOINTS: list[tuple[str, str, str, bool]] = [
    ("/health", "Basic health status: overall level and each component's level", HEALTH_JSON, True),
    ("/health/detailed", "Every component, check, active alert and metric", HEALTH_JSON, True),
    ("/health/metrics", "Latency percentiles, throughput, error rates (1m, 5m), process figures", JSON, True),
    ("/health/components", "Each component's level, checks and details", HEALTH_JSON, True),
    (
        "/health/redis",
        "Redis: round trip, version, role, memory, evictions, clients, persistence",
        HEALTH_JSON,
        True,
    ),
    ("/health/sessions", "Session store checks and session statistics", HEALTH_JSON, True),
    ("/livez", "Process liveness (never touches Redis)", HEALTH_JSON, False),
    ("/readyz", "Readiness: Redis reachable, scripts loaded, not shutting down", HEALTH_JSON, False),
    ("/metrics", "Prometheus text exposition", CONTENT_TYPE, True),
]


def endpoints(config: HealthConfig) -> list[HealthCheckEndpoint]:
    """The endpoints the app serves (``requires_auth`` only when a token is configured)."""
    return [
        HealthCheckEndpoint(
            path=path,
            method="GET",
            description=description,
            content_type=content_type,
            requires_auth=protected and config.auth_token is not None,
        )
        for path, description, content_type, protected in _ENDPOINTS
    ]


def dump(value: Any) -> str:
    """JSON text of a model (IETF field names) or of plain data."""
    if isinstance(value, BaseModel):
        return value.model_dump_json(by_alias=True)
    return json.dumps(value, default=str, separators=(",", ":"))


def build_app(health: HealthSource) -> Starlette:
    """The ASGI app serving ``health``'s endpoints."""
    token = health.config.auth_token.get_secret_value().encode() if health.config.auth_token else None

    def respond(value: Any, status: int = 200, media_type: str = HEALTH_JSON) -> Response:
        return Response(health.to_json(value), status_code=status, media_type=media_type)

    bodies: dict[str, tuple[HealthReport, str]] = {}

    def respond_cached(path: str, report: HealthReport, build: Callable[[], Any]) -> Response:
        """Serialize a body once per report: the report only changes once per check."""
        hit = bodies.get(path)
        if hit is None or hit[0] is not report:  # the cache holds the report, so its identity is not reused
            hit = bodies[path] = (report, health.to_json(build()))
        return Response(hit[1], status_code=report.http_status, media_type=HEALTH_JSON)

    def protected(handler: Handler) -> Handler:
        if token is None:
            return handler

        async def guarded(request: Request) -> Response:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
                response = respond({"status": "fail", "output": "missing or invalid bearer token"}, 401)
                response.headers["WWW-Authenticate"] = 'Bearer realm="huddle"'
                return response
            return await handler(request)

        return guarded

    async def basic(request: Request) -> Response:
        report = await health.get_health_status()
        return respond_cached("/health", report, lambda: basic_body(report))

    def basic_body(report: HealthReport) -> dict[str, Any]:
        return {
            "status": report.status,
            "overall": report.overall,
            "version": report.version,
            "serviceId": report.service_id,
            "description": report.description,
            "ready": report.ready,
            "time": report.time.isoformat(),
            "components": {name: component.level for name, component in report.components.items()},
        }

    async def detailed(request: Request) -> Response:
        report = await health.get_health_status()
        return respond_cached("/health/detailed", report, lambda: report)

    async def metrics(request: Request) -> Response:
        return respond(health.metrics(), media_type=JSON)

    async def components(request: Request) -> Response:
        report = await health.get_health_status()
        return respond_cached("/health/components", report, lambda: components_body(report))

    def components_body(report: HealthReport) -> dict[str, Any]:
        return {
            "status": report.status,
            "overall": report.overall,
            "time": report.time.isoformat(),
            "components": {
                name: component.model_dump(mode="json", by_alias=True)
                for name, component in report.components.items()
            },
        }

    async def component(name: str, extra: dict[str, Any] | None = None) -> Response:
        report = await health.get_health_status()
        found = report.components[name]
        level = "healthy" if found.level == "not_configured" else found.level
        body = {
            "status": ietf_status(level),
            "level": found.level,
            "time": report.time.isoformat(),
            "component": found.model_dump(mode="json", by_alias=True),
            **(extra or {}),
        }
        return respond(body, http_status(level))

    async def redis(request: Request) -> Response:
        return await component("redis")

    async def sessions(request: Request) -> Response:
        stats = None
        try:
            found = await health.session_stats()
            stats = found.model_dump(mode="json", by_alias=True) if found is not None else None
        except (TimeoutError, *UNREACHABLE) as exc:  # reported in the body; the component carries the level
            stats = {"error": f"{type(exc).__name__}: {exc}"}
        return await component("sessions", {"stats": stats})

    async def livez(request: Request) -> Response:
        return respond({"status": "pass", "pid": os.getpid(), "uptimeSeconds": health.process.uptime_seconds})

    async def readyz(request: Request) -> Response:
        readiness = await health.check_readiness()
        return respond(readiness, 200 if readiness.ready else 503)

    async def prometheus(request: Request) -> Response:
        return Response(health.redact(health.prometheus().decode()), media_type=CONTENT_TYPE)

    handlers: dict[str, Handler] = {
        "/health": basic,
        "/health/detailed": detailed,
        "/health/metrics": metrics,
        "/health/components": components,
        "/health/redis": redis,
        "/health/sessions": sessions,
        "/livez": livez,
        "/readyz": readyz,
        "/metrics": prometheus,
    }
    routes = [
        Route(path, protected(handlers[path]) if needs_auth else handlers[path], methods=["GET"])
        for path, _, _, needs_auth in _ENDPOINTS
    ]
    return Starlette(routes=routes)
