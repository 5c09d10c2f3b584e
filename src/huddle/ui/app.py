"""The console's ASGI app: static page shells, assets, and the login route that sets the token cookie."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from pathlib import Path
from string import Template
from typing import Final
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HERE: Final = Path(__file__).parent
STATIC_DIR: Final = HERE / "static"
TEMPLATES_DIR: Final = HERE / "templates"

COOKIE_NAME: Final = "huddle_token"
COOKIE_MAX_AGE: Final = 12 * 3600
MAX_LOGIN_BODY: Final = 16 * 1024

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS: Final = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make form posts say Origin: null
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)

PAGES: Final = {
    "sessions": "Sessions",
    "session": "Session",
    "replays": "Replays",
    "replay": "Replay",
    "health": "Health",
    "login": "Sign in",
}


class SecurityHeaders:
    """Adds the strict CSP and related headers to every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class PageRenderer:
    """Builds each page shell once per mount prefix; shells hold no data, only where the assets and API are."""

    def __init__(self, api_root: str | None) -> None:
        self.api_root = api_root
        self.layout = Template((TEMPLATES_DIR / "layout.html").read_text(encoding="utf-8"))
        self.bodies = {name: (TEMPLATES_DIR / f"{name}.html").read_text(encoding="utf-8") for name in PAGES}
        self.cache: dict[tuple[str, str], str] = {}

    def render(self, page: str, ui_root: str) -> str:
        """The page's HTML for a console mounted at ``ui_root``."""
        key = (page, ui_root)
        if key not in self.cache:
            api_root = self.api_root if self.api_root is not None else ui_root.rsplit("/", 1)[0]
            self.cache[key] = self.layout.substitute(
                title=html.escape(PAGES[page]),
                page=page,
                body=self.bodies[page],
                ui=html.escape(ui_root, quote=True),
                api=html.escape(api_root, quote=True),
            )
        return self.cache[key]


def ui_root_of(request: Request) -> str:
    """The prefix the console is mounted at (``/ui`` in ``huddle serve``), without a trailing slash."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def safe_next(target: str, ui_root: str) -> str:
    """Where to go after signing in: only a path inside the console (never another site)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith(ui_root + "/") or "\\" in target:
        return ui_root + "/"
    return target


def same_origin(request: Request) -> bool:
    """False when the browser says the form was posted from another site (login CSRF)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return parts.netloc == request.headers.get("host", "")


def console_app(api_root: str | None = None) -> Starlette:
    """The web console as an ASGI app; ``huddle serve`` mounts it at ``/ui``.

    ``api_root`` is the path prefix of the HTTP API (``/v1`` and ``/health`` below it); None means the parent
    of the console's mount point (``""`` when mounted at ``/ui``)."""
    renderer = PageRenderer(api_root)

    def page(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            body = renderer.render(name, ui_root_of(request))
            return HTMLResponse(body, headers={"cache-control": "no-store"})

        return endpoint

    async def login(request: Request) -> Response:
        ui_root = ui_root_of(request)
        if not same_origin(request):
            return Response("cross-site sign-in refused", status_code=403, media_type="text/plain")
        raw = await request.body()
        if len(raw) > MAX_LOGIN_BODY:
            return Response("request too large", status_code=413, media_type="text/plain")
        form = parse_qs(raw.decode("utf-8", errors="replace"), max_num_fields=4)
        token = (form.get("token") or [""])[0].strip()
        target = safe_next((form.get("next") or [""])[0], ui_root)
        response = RedirectResponse(target, status_code=303)
        if token:
            # HttpOnly: page scripts never see the token; the browser sends it to the API with each request.
            response.set_cookie(
                COOKIE_NAME,
                token,
                max_age=COOKIE_MAX_AGE,
                path="/",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        else:
            response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
        return response

    async def logout(request: Request) -> Response:
        if not same_origin(request):
            return Response("cross-site sign-out refused", status_code=403, media_type="text/plain")
        response = RedirectResponse(ui_root_of(request) + "/login", status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
        return response

    routes = [
        Route("/", page("sessions")),
        Route("/sessions/{session_id}", page("session")),
        Route("/replays", page("replays")),
        Route("/replays/{replay_id}", page("replay")),
        Route("/health", page("health")),
        Route("/login", page("login"), methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(SecurityHeaders)
    return app
