"""The hot route, ``POST /v1/sessions/{id}/events``, answered without FastAPI's per-request machinery.

Same contract as the documented route in ``routes_events.py``, which stays in ``/openapi.json`` and answers
whatever this path does not: the same token check, body limit, pydantic models, statuses and problem bodies.
A request this path cannot answer with certainty (an unusual content type, a body or header the models refuse)
goes to the FastAPI route with its body, so every validation error reads exactly as it always did."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Final

from pydantic import Field, TypeAdapter
from starlette.types import Message, Receive, Scope, Send

from ..core.manager import SessionManager
from ..errors import HuddleError
from ..ids import ID_PATTERN
from .auth import LOCAL_ADMIN, Identity, TokenStore, presented_token, require_writer, route_path
from .limits import too_large
from .problems import InvalidRequestError, UnauthorizedError, internal_problem, problem_response
from .routes_events import expected_seq_of
from .schemas import MAX_BATCH, EventSubmission

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_PATH: Final = re.compile(r"/v1/sessions/([^/]+)/events")
_ONE: Final = TypeAdapter(EventSubmission)
_MANY: Final = TypeAdapter(Annotated[list[EventSubmission], Field(min_length=1, max_length=MAX_BATCH)])
_UNAUTHORIZED: Final = "a valid token is required (Authorization: Bearer <token> or the huddle_token cookie)"
_WHITESPACE: Final = b" \t\r\n"


def _json_type(value: bytes) -> bool:
    """``application/json`` or ``application/<x>+json`` (parameters allowed), as FastAPI reads a JSON body."""
    kind = value.split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))


class AppendFastPath:
    """Serves ``POST /v1/sessions/{id}/events`` directly; ``match`` says whether a request is one."""

    def __init__(self, manager: SessionManager, tokens: TokenStore, max_bytes: int) -> None:
        self.manager = manager
        self.tokens = tokens
        self.max_bytes = max_bytes

    @staticmethod
    def match(scope: Scope) -> str | None:
        """The session id if ``scope`` is an append request with a well-formed id, else None."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return None
        found = _PATH.fullmatch(route_path(scope))
        if found is None or ID_PATTERN.fullmatch(found.group(1)) is None:
            return None
        return found.group(1)

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, session_id: str, full: ASGIApp
    ) -> None:
        """Answer the append, or hand it (with the body already read) to ``full``, the FastAPI app."""
        path: str = scope["path"]
        identity = self._identity(scope)
        if identity is None:
            await problem_response(UnauthorizedError(_UNAUTHORIZED), path)(scope, receive, send)
            return
        content_type = idempotency_key = if_match = None
        declared = 0
        for name, value in scope["headers"]:
            if name == b"content-type" and content_type is None:
                content_type = value
            elif name == b"content-length":
                declared = int(value) if value.isdigit() else 0
            elif name == b"idempotency-key" and idempotency_key is None:
                idempotency_key = value.decode("latin-1")
            elif name == b"if-match" and if_match is None:
                if_match = value.decode("latin-1")
        if declared > self.max_bytes:
            await problem_response(too_large(self.max_bytes, declared), path)(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            body = body + chunk if body else chunk  # one chunk is the usual case: no copy
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await problem_response(too_large(self.max_bytes, len(body)), path)(scope, receive, send)
                return
        submitted: EventSubmission | list[EventSubmission] | None = None
        if (
            content_type is not None
            and _json_type(content_type)
            and (idempotency_key is None or ID_PATTERN.fullmatch(idempotency_key) is not None)
        ):
            start = body.lstrip(_WHITESPACE)[:1]
            adapter = _ONE if start == b"{" else _MANY if start == b"[" else None
            if adapter is not None:
                try:
                    submitted = adapter.validate_json(body)
                except ValueError:  # pydantic's ValidationError included: the route words the refusal
                    submitted = None
        if submitted is None:  # let the documented route answer, with its own validation errors
            await full(scope, _replay(body, receive), send)
            return
        try:
            status, answer, seq = await self._append(
                session_id, submitted, identity, idempotency_key, if_match
            )
        except HuddleError as exc:
            await problem_response(exc, path)(scope, receive, send)
            return
        except Exception as exc:  # a bug on our side: logged, and a 500 that names no internals
            await internal_problem(exc, path)(scope, receive, send)
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(answer)),
            (b"etag", b'"%d"' % seq),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    def _identity(self, scope: Scope) -> Identity | None:
        if not self.tokens.configured:
            return LOCAL_ADMIN
        token = presented_token(scope)
        return self.tokens.identify(token) if token is not None else None

    async def _append(
        self,
        session_id: str,
        submitted: EventSubmission | list[EventSubmission],
        identity: Identity,
        idempotency_key: str | None,
        if_match: str | None,
    ) -> tuple[int, bytes, int]:
        expected = expected_seq_of(if_match)
        if isinstance(submitted, EventSubmission):
            require_writer(identity, submitted.actor)
            seq = await self.manager.emit_event(
                session_id, submitted.to_event(), submitted.actor,
                expected_seq=expected, idempotency_key=idempotency_key,
            )  # fmt: skip
            return 201, b'{"seq":%d}' % seq, seq
        actors = {item.actor for item in submitted}
        if len(actors) != 1:
            raise InvalidRequestError("every event of a list must have the same actor", actors=sorted(actors))
        actor = actors.pop()
        require_writer(identity, actor)
        seqs = await self.manager.emit_events(
            session_id, [item.to_event() for item in submitted], actor,
            expected_seq=expected, idempotency_key=idempotency_key,
        )  # fmt: skip
        return 201, b'{"seqs":[%s]}' % b",".join(b"%d" % seq for seq in seqs), seqs[-1]


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then whatever the connection says next (e.g. a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
