"""One Redis reader per followed session (and one for the lifecycle feed), fanned out to bounded queues.

Each stream connection gets a ``Subscriber``: a bounded queue the hub appends to without ever waiting, so a
slow reader never delays the hub or the other readers; a full queue marks the subscriber ``overflowed``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

from ..core.manager import SessionManager
from ..errors import HuddleError
from ..models import Event, LifecycleNotice
from .sse import frame

log = logging.getLogger("huddle.api")

T = TypeVar("T")

Encoded = tuple[int, bytes]
"""An item as a hub hands it out: its seq (0 for lifecycle notices) and its SSE frame, encoded once."""


def event_frame(event: Event) -> bytes:
    """The SSE frame of a session event: ``id: <seq>``, ``event: <type>``, ``data: <event JSON>``.

    The JSON is what ``GET /v1/sessions/{id}/events`` returns for the event (spec field names inside)."""
    return frame(event.model_dump_json(by_alias=True), event=event.type, id=event.seq)


async def _encoded_events(events: AsyncIterator[Event]) -> AsyncIterator[Encoded]:
    async for event in events:
        yield event.seq, event_frame(event)


async def _encoded_notices(notices: AsyncIterator[LifecycleNotice]) -> AsyncIterator[Encoded]:
    async for notice in notices:
        yield 0, frame(notice.model_dump_json(), event=notice.type)


class Subscriber(Generic[T]):
    """A connection's bounded view of a hub: items, whether it overflowed, and why the hub ended."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: deque[T] = deque()
        self.overflowed = False
        self.ended = False
        self.error: BaseException | None = None
        self.wake = asyncio.Event()

    def offer(self, item: T, *, wake: bool = True) -> None:
        """Append without waiting; past ``capacity`` the subscriber is marked overflowed instead."""
        if self.overflowed:
            return
        if len(self.items) >= self.capacity:
            self.overflowed = True
            self.items.clear()  # nothing queued is needed any more: the reader resumes from the log
        else:
            self.items.append(item)
        if wake:
            self.wake.set()

    def end(self, error: BaseException | None) -> None:
        """The hub stopped (session completed or gone, or ``error``)."""
        self.ended, self.error = True, error
        self.wake.set()

    def reset(self) -> None:
        """Forget the overflow (used while the reader is still catching up from the log)."""
        self.overflowed = False
        self.items.clear()

    async def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for something to happen; False if nothing did."""
        if self.items or self.ended or self.overflowed:
            return True
        self.wake.clear()
        try:
            async with asyncio.timeout(seconds):
                await self.wake.wait()
        except TimeoutError:
            return False
        return True


class Hub(Generic[T]):
    """Reads one feed and offers every item to each subscriber; stops when the feed ends or nobody listens."""

    def __init__(
        self,
        name: str,
        feed: Callable[[], AsyncIterator[T]],
        on_done: Callable[[Hub[T]], None],
        coalesce: float = 0.0,
    ) -> None:
        self.name = name
        self.coalesce = coalesce
        self._flush: asyncio.TimerHandle | None = None
        self.subscribers: set[Subscriber[T]] = set()
        self._feed = feed
        self._on_done = on_done
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        """Start reading the feed."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"huddle-hub-{self.name}")

    @property
    def running(self) -> bool:
        """True while the feed is read."""
        return self._task is not None and not self._task.done() and not self._stopping

    def add(self, capacity: int) -> Subscriber[T]:
        """A new subscriber receiving every item read from now on."""
        subscriber: Subscriber[T] = Subscriber(capacity)
        self.subscribers.add(subscriber)
        return subscriber

    def remove(self, subscriber: Subscriber[T]) -> None:
        """Drop a subscriber; the last one leaving stops the hub."""
        self.subscribers.discard(subscriber)
        if not self.subscribers and self._task is not None:
            self._stopping = True
            self._task.cancel()

    async def _run(self) -> None:
        error: BaseException | None = None
        try:
            async for item in self._feed():
                if not self.coalesce:
                    for subscriber in list(self.subscribers):
                        subscriber.offer(item)
                    continue
                # Wake each reader once per window, not once per event: with many readers the wake-ups (one
                # task switch and one socket write each) are what costs.
                for subscriber in list(self.subscribers):
                    subscriber.offer(item, wake=False)
                if self._flush is None:
                    self._flush = asyncio.get_running_loop().call_later(self.coalesce, self._wake_all)
        except asyncio.CancelledError:
            error = None
        except HuddleError as exc:
            error = exc
        except Exception as exc:  # reported to each reader as an error event, and logged here
            log.exception("feed %s failed", self.name)
            error = exc
        finally:
            if self._flush is not None:
                self._flush.cancel()
            self._on_done(self)
            for subscriber in list(self.subscribers):
                subscriber.end(error)

    def _wake_all(self) -> None:
        self._flush = None
        for subscriber in self.subscribers:
            subscriber.wake.set()

    async def stop(self) -> None:
        """Cancel the reader and wait for it."""
        if self._task is not None:
            self._stopping = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


class Fanout:
    """The hubs of one process: one per followed session, one for the lifecycle feed."""

    def __init__(self, manager: SessionManager, coalesce: float = 0.0) -> None:
        self.manager = manager
        self.coalesce = coalesce
        self.sessions: dict[str, Hub[Encoded]] = {}
        self.lifecycle_hub: Hub[Encoded] | None = None

    async def session(self, session_id: str, capacity: int) -> tuple[Hub[Encoded], Subscriber[Encoded]]:
        """Subscribe to a session's live events (the hub starts at the log's end when first needed)."""
        hub = self.sessions.get(session_id)
        if hub is None or not hub.running:
            bounds = await self.manager.store.first_and_last_seq(session_id)
            start = bounds[1] + 1 if bounds is not None else 1
            hub = self.sessions.get(session_id)  # another connection may have started one meanwhile
            if hub is None or not hub.running:
                hub = Hub(
                    session_id,
                    lambda: _encoded_events(self.manager.subscribe(session_id, start)),
                    self._session_done,
                    self.coalesce,
                )
                self.sessions[session_id] = hub
                hub.start()
        return hub, hub.add(capacity)

    def _session_done(self, hub: Hub[Encoded]) -> None:
        if self.sessions.get(hub.name) is hub:
            del self.sessions[hub.name]

    def lifecycle(self, capacity: int) -> tuple[Hub[Encoded], Subscriber[Encoded]]:
        """Subscribe to the lifecycle notices of every session."""
        hub = self.lifecycle_hub
        if hub is None or not hub.running:
            hub = self.lifecycle_hub = Hub(
                "lifecycle", lambda: _encoded_notices(self.manager.lifecycle()), self._lifecycle_done
            )
            hub.start()
        return hub, hub.add(capacity)

    def _lifecycle_done(self, hub: Hub[Encoded]) -> None:
        if self.lifecycle_hub is hub:
            self.lifecycle_hub = None

    async def close(self) -> None:
        """Stop every hub."""
        hubs = [*self.sessions.values()]
        if self.lifecycle_hub is not None:
            hubs.append(self.lifecycle_hub)
        for hub in hubs:
            await hub.stop()

    def wake_all(self) -> None:
        """Wake every subscriber (e.g. so streams notice a shutdown at once)."""
        hubs = [*self.sessions.values(), *([self.lifecycle_hub] if self.lifecycle_hub else [])]
        for hub in hubs:
            for subscriber in hub.subscribers:
                subscriber.wake.set()
