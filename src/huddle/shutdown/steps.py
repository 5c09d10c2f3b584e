"""Running shutdown steps with a time bound, abandoning the ones that outlive it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("huddle.shutdown")


class BoundedSteps:
    """Runs coroutines as tasks with a deadline; a late task is cancelled and kept (never awaited) until it ends.

    Not awaiting a cancelled task is what bounds the shutdown even when a component swallows the cancellation."""

    def __init__(self) -> None:
        self._stray: set[asyncio.Task[Any]] = set()

    async def run(self, work: Coroutine[Any, Any, Any], budget: float) -> asyncio.Task[Any] | None:
        """The finished task (its result or exception inside), or None if ``budget`` seconds passed first."""
        task = asyncio.create_task(work)
        try:
            await asyncio.wait({task}, timeout=max(budget, 0.0))
        except asyncio.CancelledError:
            self.abandon(task)
            raise
        if not task.done():
            self.abandon(task)
            return None
        return task

    def abandon(self, task: asyncio.Task[Any]) -> None:
        """Cancel ``task`` without waiting for it; keep a reference until it ends."""
        task.cancel()
        self._stray.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._stray.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("abandoned shutdown step ended with %r", task.exception())

    @property
    def abandoned(self) -> int:
        """Abandoned tasks that have not ended yet."""
        return len(self._stray)
