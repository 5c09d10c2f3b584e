"""A TCP proxy for tests that cuts connections at chosen points (in front of a real redis-server).

It forwards bytes both ways and, when armed, closes a client connection: at accept (the next ``n`` connections),
when a request contains a given byte string (before forwarding it), or after a given number of complete RESP
replies went back to the client (the cut then falls between two replies of one pipelined batch).
"""

from __future__ import annotations

import asyncio
import contextlib

import hiredis

from huddle.backend.embedded import free_port


class CutProxy:
    """``127.0.0.1:<port>`` forwarding to ``127.0.0.1:<upstream>``; see the module doc for the cuts."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.cuts = 0
        """Connections cut so far."""
        self._refuse = 0
        self._request_cuts: list[tuple[tuple[bytes, ...], int]] = []
        self._reply_cut: int | None = None
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> CutProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._links):
            task.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def refuse_next(self, count: int) -> None:
        """Close the next ``count`` accepted connections at once (a server going away during start-up)."""
        self._refuse = count

    def cut_on_request(self, *needles: bytes, times: int = 1) -> None:
        """Close the connection (request not forwarded) the next ``times`` times a request contains one of
        ``needles`` (e.g. ``b"EVALSHA", b"FCALL"``: a script call, whichever way it is sent)."""
        self._request_cuts.append((needles, times))

    def cut_after_replies(self, count: int) -> None:
        """Forward ``count`` more complete replies on a connection, then close it (mid-batch when pipelined)."""
        self._reply_cut = count

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        try:
            if self._refuse > 0:
                self._refuse -= 1
                self.cuts += 1
                return
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            except OSError:
                return
            try:
                await self._pump(reader, writer, up_reader, up_writer)
            finally:
                up_writer.close()
        except asyncio.CancelledError:
            pass  # stop(): the link ends here (asyncio's server callback would report the cancellation)
        finally:
            writer.close()
            self._links.discard(task)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        cut = asyncio.Event()

        async def requests() -> None:
            while data := await reader.read(65536):
                for index, (needles, times) in enumerate(self._request_cuts):
                    if times > 0 and any(needle in data for needle in needles):
                        self._request_cuts[index] = (needles, times - 1)
                        self.cuts += 1
                        cut.set()
                        return
                up_writer.write(data)
                await up_writer.drain()

        async def replies() -> None:
            parser: hiredis.Reader | None = None
            while data := await up_reader.read(65536):
                if self._reply_cut is not None:
                    parser = parser or hiredis.Reader()
                    keep, self._reply_cut = _forwardable(parser, data, self._reply_cut)
                    if self._reply_cut == 0:
                        self._reply_cut = None
                        writer.write(data[:keep])
                        await writer.drain()
                        self.cuts += 1
                        cut.set()
                        return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(requests()), asyncio.ensure_future(replies())]
        waiter = asyncio.ensure_future(cut.wait())
        try:
            await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [*tasks, waiter]:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(*tasks, waiter, return_exceptions=True)


def _forwardable(parser: hiredis.Reader, data: bytes, remaining: int) -> tuple[int, int]:
    """(bytes of ``data`` to forward, replies still to forward after them): stops right after the reply that
    brings ``remaining`` to 0 (replies split over chunks are followed by the per-connection ``parser``)."""
    for offset in range(len(data)):
        if remaining == 0:
            return offset, 0
        parser.feed(data[offset : offset + 1])
        while remaining and parser.gets() is not False:
            remaining -= 1
    return len(data), remaining
