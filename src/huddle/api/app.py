"""``create_app``: the HTTP API (``/v1``), its live streams, ``/openapi.json``, MCP at ``/mcp``, the console at ``/ui``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from .. import __version__
from ..core.manager import SessionManager
from ..errors import HuddleError
from ..replay import SessionReplay
from . import routes_events, routes_replays, routes_sessions
from .auth import AuthMiddleware, TokenStore
from .context import ApiContext
from .fastpath import AppendFastPath
from .limits import DEFAULT_MAX_BODY, BodyLimitMiddleware
from .problems import (
    ApiError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    internal_problem,
    problem_response,
)
from .streams import StreamService, StreamSettings

DESCRIPTION = """Multi-agent sessions on Redis: create and join sessions, append events atomically, follow them
live over Server-Sent Events, checkpoint, record and replay. Errors are RFC 9457 problem documents whose `code`
is the huddle error code. Authenticate with `Authorization: Bearer <token>` (or the `huddle_token` cookie)."""


def _status_problem(status: int, detail: str) -> ApiError:
    error: ApiError
    if status == 404:
        error = NotFoundError(detail)
    else:
        error = ApiError(detail)
        error.status = status
        error.code = {405: "method_not_allowed", 406: "not_acceptable", 415: "unsupported_media_type"}.get(
            status, "bad_request"
        )
    return error


def _install_error_handlers(app: FastAPI) -> None:
    async def huddle_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HuddleError)
        return problem_response(exc, request.url.path)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        detail = "invalid request: " + (errors[0] if errors else "malformed")
        if len(errors) > 1:
            detail += f" (+{len(errors) - 1} more)"
        return problem_response(InvalidRequestError(detail, errors=errors[:20]), request.url.path)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        cause = exc.__cause__
        if isinstance(cause, PayloadTooLargeError):  # raised while FastAPI read the body
            return problem_response(cause, request.url.path)
        if exc.status_code == 400 and cause is not None:
            return problem_response(
                InvalidRequestError(f"the body is not valid JSON: {cause}"), request.url.path
            )
        if exc.status_code == 422:
            return problem_response(InvalidRequestError(str(exc.detail)), request.url.path)
        return problem_response(_status_problem(exc.status_code, str(exc.detail)), request.url.path)

    async def unexpected(request: Request, exc: Exception) -> Response:
        return internal_problem(exc, request.url.path)

    app.add_exception_handler(HuddleError, huddle_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


class HuddleApi(FastAPI):
    """The API app: FastAPI, with the event append route answered first by a lean path (``fastpath.py``)."""

    fast_append: AppendFastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_append
        if fast is not None and scope["type"] == "http":
            session_id = fast.match(scope)
            if session_id is not None:
                await fast(scope, receive, send, session_id, super().__call__)
                return
        await super().__call__(scope, receive, send)


def create_app(
    manager: SessionManager,
    *,
    tokens: TokenStore | None = None,
    replay: SessionReplay | None = None,
    health: Any | None = None,
    streams: StreamSettings | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    mcp: bool = True,
    console: bool = True,
) -> HuddleApi:
    """The API as one ASGI app for ``manager``; mount it in your own app or serve it with uvicorn.

    ``tokens``: who may do what (default: ``HUDDLE_API_TOKENS`` / ``HUDDLE_API_TOKENS_FILE``; none configured
    means every caller is a local admin). ``replay``: the recorder to use (default: one owned by the app).
    ``health``: a ``SessionHealthCheck`` whose endpoints (``/health``, ``/livez``, ...) are served too.
    Its lifespan (``app.router.lifespan_context``) stops the streams and runs MCP; enter it when mounting."""
    token_store = tokens if tokens is not None else TokenStore.from_env()
    owns_replay = replay is None
    recorder = replay if replay is not None else SessionReplay(manager)
    service = StreamService(manager, streams)
    endpoint = None
    if mcp:
        from .mcp import create_mcp_endpoint

        endpoint = create_mcp_endpoint(manager)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if endpoint is not None:
                await stack.enter_async_context(endpoint.lifespan())
            try:
                yield
            finally:
                service.close_all()
                await service.fanout.close()
                if owns_replay:
                    await recorder.close()

    app = HuddleApi(
        title="huddle",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # the interactive pages load their assets from a CDN: huddle must work air-gapped
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.huddle = ApiContext(manager=manager, replay=recorder, streams=service)
    for router in (routes_sessions.router, routes_events.router, routes_replays.router):
        app.include_router(router)
    if health is not None:
        health_routes: list[BaseRoute] = list(health.asgi_app().routes)
        app.router.routes.extend(health_routes)
    if endpoint is not None:
        # `/mcp` itself must reach the endpoint: MCP clients need not follow a 307 to `/mcp/` on POST.
        app.router.routes.append(
            Route("/mcp", endpoint.app, methods=["GET", "POST", "DELETE"], include_in_schema=False)
        )
        app.mount("/mcp", endpoint.app)
    if console:
        from ..ui import console_app

        app.mount("/ui", console_app())
    _install_error_handlers(app)
    _add_security_scheme(app, token_store)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    health_token = health.config.auth_token if health is not None else None
    app.add_middleware(
        AuthMiddleware,
        tokens=token_store,
        health_token=health_token.get_secret_value() if health_token is not None else None,
    )
    app.fast_append = AppendFastPath(manager, token_store, max_body_bytes)
    return app


def _add_security_scheme(app: FastAPI, tokens: TokenStore) -> None:
    """Document the bearer token in ``/openapi.json``."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
            if tokens.configured:
                schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
