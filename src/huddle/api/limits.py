"""Bounds: request body size (413 before the body is read past the limit) and live streams per process."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import PayloadTooLargeError, TooManyStreamsError, problem_response

DEFAULT_MAX_BODY = 1024 * 1024


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes``: by ``Content-Length`` at once, or while a chunked body is read."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = 0
                if length > self.max_bytes:
                    await problem_response(self._error(length), scope.get("path"))(scope, receive, send)
                    return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._error(received)
            return message

        await self.app(scope, limited, send)

    def _error(self, size: int) -> PayloadTooLargeError:
        return too_large(self.max_bytes, size)


def too_large(limit: int, size: int) -> PayloadTooLargeError:
    """The 413 error for a body of ``size`` bytes over ``limit``."""
    return PayloadTooLargeError(
        f"the request body is over the limit of {limit} bytes", limit=limit, size=size
    )


class StreamSlots:
    """At most ``limit`` event streams at once in this process; ``take()`` raises 503 beyond it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def take(self) -> None:
        """Claim a slot or raise ``TooManyStreamsError``."""
        if self.in_use >= self.limit:
            raise TooManyStreamsError(
                f"this server already serves {self.in_use} streams (limit {self.limit}); retry later",
                limit=self.limit,
            )
        self.in_use += 1

    def give_back(self) -> None:
        """Release a slot taken with ``take()``."""
        self.in_use = max(self.in_use - 1, 0)
