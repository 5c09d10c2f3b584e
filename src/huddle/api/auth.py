"""Tokens and roles: who is calling (``Identity``), set into the ASGI scope before any route runs.

Tokens come from ``Authorization: Bearer <token>`` or the ``huddle_token`` cookie (browsers' EventSource cannot
send headers), never from the query string. They are kept only as SHA-256 digests and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Literal

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ConfigError
from ..ids import ID_PATTERN
from .problems import ForbiddenError, InvalidRequestError, UnauthorizedError, problem_response

Role = Literal["agent", "observer", "admin"]
ROLES: tuple[Role, ...] = ("agent", "observer", "admin")
COOKIE = "huddle_token"
ENV_TOKENS = "HUDDLE_API_TOKENS"
ENV_TOKENS_FILE = "HUDDLE_API_TOKENS_FILE"
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller: its role, the agent id an agent token is bound to, and a display name."""

    role: Role
    agent_id: str | None
    name: str


LOCAL_ADMIN = Identity("admin", None, "local")
"""Every caller's identity when no token is configured (``huddle serve`` then binds to loopback only)."""


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One configured token: its SHA-256 digest and the identity it grants."""

    digest: bytes
    identity: Identity


def digest(token: str) -> bytes:
    """SHA-256 of a token (what is stored and compared)."""
    return hashlib.sha256(token.encode()).digest()


def _identity(role: str, name: str | None, where: str) -> Identity:
    if role not in ROLES:
        raise ConfigError(f"{where}: unknown role {role!r} (use agent, observer or admin)")
    if role == "agent":
        if not name or ID_PATTERN.fullmatch(name) is None:
            raise ConfigError(f"{where}: an agent token needs a valid agent id (role agent:<agent_id>)")
        return Identity("agent", name, name)
    return Identity("admin" if role == "admin" else "observer", None, name or role)


class TokenStore:
    """The configured tokens (hashed); ``identify`` finds the identity of a presented token."""

    def __init__(self, entries: Iterable[TokenEntry] = ()) -> None:
        self.entries = list(entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def configured(self) -> bool:
        """True if at least one token exists (otherwise every caller is the local admin)."""
        return bool(self.entries)

    def identify(self, token: str) -> Identity | None:
        """The identity for ``token``, or None; every entry is compared, so timing does not reveal a match."""
        given = digest(token)
        found: Identity | None = None
        for entry in self.entries:
            if hmac.compare_digest(entry.digest, given) and found is None:
                found = entry.identity
        return found

    @classmethod
    def parse_env(cls, text: str) -> TokenStore:
        """Entries ``role[:name]=token`` separated by commas or whitespace, e.g. ``agent:alice=s3cret``."""
        entries: list[TokenEntry] = []
        for number, item in enumerate(re.split(r"[,\s]+", text.strip()), start=1):
            if not item:
                continue
            spec, sep, token = item.partition("=")
            if not sep or not token:
                raise ConfigError(f"{ENV_TOKENS} entry {number}: expected role[:name]=token")
            role, _, name = spec.partition(":")
            entries.append(
                TokenEntry(digest(token), _identity(role, name or None, f"{ENV_TOKENS} #{number}"))
            )
        return cls(entries)

    @classmethod
    def load_toml(cls, path: Path) -> TokenStore:
        """``[[tokens]]`` tables with ``role``, ``agent_id`` or ``name``, and ``sha256`` (hex) or ``token``."""
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read the token file {path}: {exc}") from None
        entries: list[TokenEntry] = []
        for number, table in enumerate(data.get("tokens", []), start=1):
            where = f"{path} token #{number}"
            if not isinstance(table, dict):
                raise ConfigError(f"{where}: expected a table")
            entries.append(cls._entry(table, where))
        return cls(entries)

    @staticmethod
    def _entry(table: dict[str, Any], where: str) -> TokenEntry:
        role = str(table.get("role", ""))
        name = table.get("agent_id") if role == "agent" else table.get("name")
        hashed, plain = table.get("sha256"), table.get("token")
        if isinstance(hashed, str) and _HEX64.fullmatch(hashed.lower()):
            value = bytes.fromhex(hashed)
        elif isinstance(plain, str) and plain:
            value = digest(plain)
        else:
            raise ConfigError(f"{where}: give sha256 = '<64 hex digits>' or token = '...'")
        return TokenEntry(value, _identity(role, str(name) if name else None, where))

    @classmethod
    def from_env(cls, path: Path | None = None) -> TokenStore:
        """Tokens from ``path`` (or ``HUDDLE_API_TOKENS_FILE``) plus ``HUDDLE_API_TOKENS``."""
        file = (
            path
            if path is not None
            else (Path(os.environ[ENV_TOKENS_FILE]) if os.environ.get(ENV_TOKENS_FILE) else None)
        )
        entries: list[TokenEntry] = []
        if file is not None:
            entries += cls.load_toml(file).entries
        if os.environ.get(ENV_TOKENS):
            entries += cls.parse_env(os.environ[ENV_TOKENS]).entries
        return cls(entries)


def presented_token(scope: Scope) -> str | None:
    """The token in the Authorization header (Bearer) or the ``huddle_token`` cookie."""
    cookie_header: str | None = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return str(token.strip())
        elif name == b"cookie":
            cookie_header = bytes(value).decode("latin-1")
    if cookie_header:
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(cookie_header)
        except Exception:  # a malformed cookie header is the client's problem: no token
            return None
        morsel = cookies.get(COOKIE)
        if morsel is not None and morsel.value:
            return str(morsel.value)
    return None


class AuthMiddleware:
    """Puts ``scope["state"]["huddle_identity"]``; answers 401 on protected paths without a valid token."""

    def __init__(
        self,
        app: ASGIApp,
        tokens: TokenStore,
        protected: tuple[str, ...] = ("/v1", "/mcp"),
        health_token: str | None = None,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.protected = protected
        self.health_authorization = f"Bearer {health_token}".encode() if health_token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        identity: Identity | None = LOCAL_ADMIN
        if self.tokens.configured:
            token = presented_token(scope)
            identity = self.tokens.identify(token) if token is not None else None
        if identity is not None:
            state["huddle_identity"] = identity
            if self.health_authorization is not None and identity is not LOCAL_ADMIN:
                scope = self._health_pass(scope, identity)
        elif scope["type"] == "http" and self._protects(route_path(scope)):
            message = "a valid token is required (Authorization: Bearer <token> or the huddle_token cookie)"
            response = problem_response(UnauthorizedError(message), scope.get("path"))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _health_pass(self, scope: Scope, identity: Identity) -> Scope:
        """An observer or admin API token also opens the health endpoints guarded by their own token: the
        request reaches them carrying that token (the console's health page has only its cookie)."""
        path = route_path(scope)
        health = path in ("/health", "/metrics") or path.startswith("/health/")
        if not health or identity.role not in ("observer", "admin") or self.health_authorization is None:
            return scope
        headers = [(k, v) for k, v in scope.get("headers", ()) if k != b"authorization"]
        headers.append((b"authorization", self.health_authorization))
        return {**scope, "headers": headers}

    def _protects(self, path: str) -> bool:
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self.protected)


def route_path(scope: Scope) -> str:
    """The path below the app's mount point (``root_path`` removed when the app is mounted)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def identity_of(request: Request) -> Identity:
    """The caller's identity (set by ``AuthMiddleware``)."""
    identity = request.scope.get("state", {}).get("huddle_identity")
    if not isinstance(identity, Identity):
        raise UnauthorizedError("a valid token is required")
    return identity


def require_writer(identity: Identity, actor: str) -> None:
    """Allow writing as ``actor``: an admin, or the agent token bound to ``actor``."""
    if identity.role == "admin":
        return
    if identity.role == "agent" and identity.agent_id == actor:
        return
    if identity.role == "agent":
        raise ForbiddenError(
            f"this token acts as agent {identity.agent_id!r}, not {actor!r}",
            actor=actor,
            agent_id=identity.agent_id,
        )
    raise ForbiddenError(f"an {identity.role} token cannot write", role=identity.role)


def require_admin(identity: Identity) -> None:
    """Allow only admin tokens."""
    if identity.role != "admin":
        raise ForbiddenError(f"this needs an admin token (this one is {identity.role})", role=identity.role)


def default_actor(identity: Identity, actor: str | None) -> str:
    """``actor`` if given, else the agent id the token is bound to (admins must name one)."""
    if actor is not None:
        return actor
    if identity.agent_id is not None:
        return identity.agent_id
    raise InvalidRequestError("name the actor: this token is not bound to an agent")
