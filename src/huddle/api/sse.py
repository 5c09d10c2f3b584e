"""Server-Sent Events: frame encoding and a streaming response that notices disconnects and stuck readers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

SSE_MEDIA_TYPE = "text/event-stream"
HEARTBEAT = b": heartbeat\n"
"""A comment line. No blank line after it: some clients (httpx-sse) would dispatch a comment-only block as an
empty event repeating the last id; a comment inside the next event's block is ignored by every parser."""


def frame(
    data: str, *, event: str | None = None, id: int | str | None = None, retry_ms: int | None = None
) -> bytes:
    """One SSE frame (``data`` must be a single line of JSON: the encoders here never emit newlines)."""
    parts: list[str] = []
    if retry_ms is not None:
        parts.append(f"retry: {retry_ms}\n")
    if id is not None:
        parts.append(f"id: {id}\n")
    if event is not None:
        parts.append(f"event: {event}\n")
    parts.append(f"data: {data}\n\n")
    return "".join(parts).encode()


class EventStreamResponse(Response):
    """Sends the frames of ``stream`` (``retry_ms``: the reconnect delay put in the first event); stops when
    the client disconnects.

    A send that takes longer than ``send_timeout`` (a reader that stopped reading while its socket buffer is
    full) ends the response, so a stuck reader holds no memory or slot for long; ``on_close`` always runs."""

    def __init__(
        self,
        stream: AsyncIterator[bytes],
        *,
        send_timeout: float,
        on_close: Callable[[], None] | None = None,
        headers: dict[str, str] | None = None,
        retry_ms: int | None = None,
    ) -> None:
        super().__init__(
            None,
            status_code=200,
            media_type=SSE_MEDIA_TYPE,
            headers={"cache-control": "no-store", "x-accel-buffering": "no", **(headers or {})},
        )  # x-accel-buffering: proxies must not buffer the stream
        self.stream = stream
        self.retry_ms = retry_ms
        self.send_timeout = send_timeout
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._run(receive, send)
        finally:
            with contextlib.suppress(Exception):
                await self.stream.aclose()  # type: ignore[attr-defined]
            if self.on_close is not None:
                self.on_close()

    async def _run(self, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        writer = asyncio.ensure_future(self._write(send))
        listener = asyncio.ensure_future(self._listen(receive))
        try:
            await asyncio.wait({writer, listener}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writer, listener):
                task.cancel()
            for task in (writer, listener):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if writer.done() and not writer.cancelled() and writer.exception() is None:
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _write(self, send: Send) -> None:
        # A watchdog instead of a timeout per write: a timer per chunk would cost more than the write itself.
        loop = asyncio.get_running_loop()
        writer = asyncio.current_task()
        sending_since: float | None = None
        handle: asyncio.TimerHandle | None = None

        def watch() -> None:
            nonlocal handle
            if sending_since is not None and loop.time() - sending_since > self.send_timeout and writer:
                writer.cancel()
                return
            handle = loop.call_later(self.send_timeout / 2, watch)

        watch()
        # The SSE ``retry`` field goes in the first event (a block of its own would be dispatched as an empty
        # event by some clients).
        hint = b"retry: %d\n" % self.retry_ms if self.retry_ms is not None else None
        try:
            async for chunk in self.stream:
                if hint is not None and not chunk.startswith(b":"):
                    if not chunk.startswith(b"retry:"):
                        chunk = hint + chunk
                    hint = None
                sending_since = loop.time()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sending_since = None
        finally:
            if handle is not None:
                handle.cancel()

    @staticmethod
    async def _listen(receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
