"""A calling thread's own event loop and async manager, for the blocking client's calls from that thread.

A call runs the loop until the call is done. One long-lived worker task per thread runs the calls, so a call costs
no task of its own and the loop stops from inside the worker (one loop pass less than ``run_until_complete``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

from ..config import SessionManagerConfig
from ..core.manager import SessionManager as AsyncSessionManager

T = TypeVar("T")


class ThreadLoop:
    """An event loop and a manager owned by one thread; ``run`` is called with ``lock`` held."""

    def __init__(self, config: SessionManagerConfig) -> None:
        # asyncio's loop, not uvloop's: starting and stopping it costs less per call.
        self.loop = asyncio.new_event_loop()
        self.manager = AsyncSessionManager(config)
        self.lock = threading.Lock()
        self._number = 0
        self._pending: tuple[int, Awaitable[Any]] | None = None
        self._results: dict[int, tuple[bool, Any]] = {}
        self._wakeup: asyncio.Future[None] | None = None
        self._worker: asyncio.Task[None] | None = None

    def run(self, work: Awaitable[T]) -> T:
        """Run ``work`` to completion on this loop; its exception is raised here."""
        self._number += 1
        number = self._number
        if self._worker is None or self._worker.done():
            self._worker = self.loop.create_task(self._serve())
        self._pending = (number, work)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        try:
            while number not in self._results:
                self.loop.run_forever()
        except BaseException:  # interrupted outside the call (e.g. KeyboardInterrupt): drop the call with it
            self._abandon()
            raise
        ok, value = self._results.pop(number)
        self._results.clear()  # outcomes of abandoned calls
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    async def _serve(self) -> None:
        me = asyncio.current_task()
        while self._worker is me:
            if self._pending is None:
                self._wakeup = self.loop.create_future()
                await self._wakeup  # a cancellation here (close, abandon) ends the worker
                continue
            number, work = self._pending
            self._pending = None
            try:
                self._results[number] = (True, await work)
            except BaseException as exc:  # every outcome goes to the caller, KeyboardInterrupt included
                self._results[number] = (False, exc)
            if self._worker is me:  # an abandoned worker never stops the loop under a later call
                self.loop.stop()

    def _abandon(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._worker = self._pending = self._wakeup = None

    def close(self) -> None:
        """Stop the worker, close the manager and the loop (``lock`` held)."""
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            self.loop.run_until_complete(asyncio.gather(worker, return_exceptions=True))
        self.loop.run_until_complete(self.manager.close())
        self.loop.close()
