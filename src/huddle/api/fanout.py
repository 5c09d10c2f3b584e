"""One Redis reader per followed session (and one for the lifecycle feed), fanned out to every stream.

A hub keeps the frames it read in one shared buffer; each stream (a ``Subscriber``) is a position in it, so
appending an event costs the same for 1 or 1,000 streams. Streams are woken once per coalescing window (wider
when more streams follow the hub, so the fan-out's CPU stays bounded), and the frames a window brought are
joined once for all the streams that were caught up. A stream further behind than its capacity is
``overflowed`` (it resumes from the log or is closed with its resume id); it never delays the hub or the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from ..core.manager import SessionManager
from ..errors import HuddleError, RedisUnavailableError
from ..models import Event, LifecycleNotice
from .sse import frame

log = logging.getLogger("huddle.api")

Encoded = tuple[int, bytes]
"""An item as a hub hands it out: its seq (0 for lifecycle notices) and its SSE frame, encoded once."""
LIFECYCLE_READY_TIMEOUT = 5.0
"""Seconds a lifecycle stream waits for its Redis subscription before answering 503."""


def event_frame(event: Event) -> bytes:
    """The SSE frame of a session event: ``id: <seq>``, ``event: <type>``, ``data: <event JSON>``.

    The JSON is what ``GET /v1/sessions/{id}/events`` returns for the event (spec field names inside)."""
    return frame(event.model_dump_json(by_alias=True), event=event.type, id=event.seq)


async def _encoded_events(events: AsyncIterator[Event]) -> AsyncIterator[Encoded]:
    async for event in events:
        yield event.seq, event_frame(event)


@dataclass(frozen=True)
class Coalescing:
    """How long a hub gathers frames before waking its streams: ``per_stream`` seconds per stream, between
    ``minimum`` and ``maximum`` (each wake-up costs one task switch and one socket write per stream)."""

    minimum: float = 0.005
    per_stream: float = 0.00001
    maximum: float = 0.025

    def window(self, streams: int) -> float:
        """The window for a hub followed by ``streams`` streams."""
        return max(self.minimum, min(self.maximum, streams * self.per_stream))


class Subscriber:
    """A stream's position in a hub's buffer, whether it fell too far behind, and why the hub ended."""

    __slots__ = ("capacity", "ended", "error", "hub", "idle_since", "position", "waiter")

    def __init__(self, hub: Hub, capacity: int) -> None:
        self.hub = hub
        self.capacity = capacity
        self.position = hub.end
        self.ended = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[bool] | None = None
        self.idle_since = hub.loop.time()

    @property
    def pending(self) -> bool:
        """True if frames are waiting for this stream."""
        return self.position < self.hub.end

    @property
    def overflowed(self) -> bool:
        """True if more than ``capacity`` frames wait for this stream (the hub may drop them)."""
        return self.hub.end - self.position > self.capacity or self.position < self.hub.base

    def take(self) -> tuple[list[Encoded], bytes]:
        """The frames waiting for this stream, and the same frames joined (shared with the streams that
        take the same range)."""
        return self.hub.take(self)

    def reset(self) -> None:
        """Skip what is buffered (used while the stream still catches up from the log)."""
        self.position = self.hub.end

    def end(self, error: BaseException | None) -> None:
        """The hub stopped (session completed or gone, or ``error``)."""
        self.ended, self.error = True, error
        self.wake(True)

    def wake(self, news: bool) -> None:
        """Resolve a pending ``wait`` (``news`` False: only a heartbeat is due)."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(news)

    async def wait(self) -> bool:
        """Wait for frames, the end or a wake-up; False if only a heartbeat is due."""
        if self.pending or self.ended or self.overflowed:
            return True
        self.waiter = self.hub.loop.create_future()
        try:
            return await self.waiter
        finally:
            self.waiter = None
            self.idle_since = self.hub.loop.time()


class Hub:
    """Reads one feed into a shared buffer for its subscribers; stops when the feed ends or nobody listens."""

    def __init__(
        self,
        name: str,
        feed: Callable[[], AsyncIterator[Encoded]],
        on_done: Callable[[Hub], None],
        coalescing: Coalescing,
        heartbeat: float,
    ) -> None:
        self.name = name
        self.loop = asyncio.get_running_loop()
        self.coalescing = coalescing
        self.heartbeat = heartbeat
        self.frames: list[Encoded] = []
        self.base = 0  # absolute index of frames[0]
        self.subscribers: set[Subscriber] = set()
        self.ready = asyncio.Event()
        self._joined: dict[int, tuple[int, bytes]] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._feed = feed
        self._on_done = on_done
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def end(self) -> int:
        """Absolute index after the newest frame."""
        return self.base + len(self.frames)

    def start(self) -> None:
        """Start reading the feed (and the heartbeat ticker)."""
        self._task = self.loop.create_task(self._run(), name=f"huddle-hub-{self.name}")
        self._tick()

    @property
    def running(self) -> bool:
        """True while the feed is read."""
        return self._task is not None and not self._task.done() and not self._stopping

    def add(self, capacity: int) -> Subscriber:
        """A new subscriber receiving every frame read from now on."""
        subscriber = Subscriber(self, capacity)
        self.subscribers.add(subscriber)
        return subscriber

    def remove(self, subscriber: Subscriber) -> None:
        """Drop a subscriber; the last one leaving stops the hub."""
        self.subscribers.discard(subscriber)
        if not self.subscribers and self._task is not None:
            self._stopping = True
            self._task.cancel()

    def take(self, subscriber: Subscriber) -> tuple[list[Encoded], bytes]:
        """What ``subscriber`` has not taken yet (see ``Subscriber.take``); moves it to the end."""
        start, end = subscriber.position, self.end
        if start < self.base:
            raise RuntimeError("take() on an overflowed subscriber")  # callers check ``overflowed`` first
        items = self.frames[start - self.base :]
        subscriber.position = end
        cached = self._joined.get(start)
        if cached is not None and cached[0] == end:
            return items, cached[1]
        joined = b"".join(data for _, data in items)
        self._joined[start] = (end, joined)
        return items, joined

    def offer(self, item: Encoded) -> None:
        """Add a frame; the streams are woken at the end of the coalescing window."""
        self.frames.append(item)
        if self._flush is None:
            window = self.coalescing.window(len(self.subscribers))
            self._flush = self.loop.call_later(window, self._wake)

    def _wake(self) -> None:
        self._flush = None
        end = self.end
        keep_from = end
        for subscriber in self.subscribers:
            if subscriber.position < end:
                subscriber.wake(True)
            keep_from = min(keep_from, max(subscriber.position, end - subscriber.capacity))
        # Frames every stream has taken, and frames past a lagging stream's capacity, are dropped.
        if keep_from > self.base:
            del self.frames[: keep_from - self.base]
            self.base = keep_from
        self._joined.clear()

    def _tick(self) -> None:
        now = self.loop.time()
        for subscriber in self.subscribers:
            if now - subscriber.idle_since >= self.heartbeat:
                subscriber.wake(False)
        self._ticker = self.loop.call_later(max(self.heartbeat / 4, 0.01), self._tick)

    async def _run(self) -> None:
        error: BaseException | None = None
        try:
            async for item in self._feed():
                self.offer(item)
        except asyncio.CancelledError:
            error = None
        except HuddleError as exc:
            error = exc
        except Exception as exc:  # reported to each reader as an error event, and logged here
            log.exception("feed %s failed", self.name)
            error = exc
        finally:
            for handle in (self._flush, self._ticker):
                if handle is not None:
                    handle.cancel()
            self._flush = None
            self._on_done(self)
            for subscriber in list(self.subscribers):
                subscriber.end(error)

    def wake_all(self) -> None:
        """Wake every subscriber (e.g. so streams notice a shutdown at once)."""
        for subscriber in self.subscribers:
            subscriber.wake(True)

    async def stop(self) -> None:
        """Cancel the reader and wait for it."""
        if self._task is not None:
            self._stopping = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def lifecycle_feed(manager: SessionManager, ready: asyncio.Event) -> AsyncIterator[Encoded]:
    """The lifecycle channel as frames; ``ready`` is set once Redis confirmed the subscription (so a stream
    answers only when no later notice can be missed). Resubscribes after a lost connection."""
    backoff = 0.05
    while not manager.closed:
        pubsub = manager.store.client.pubsub()
        try:
            await pubsub.subscribe(manager.store.keys.global_channel)
            while not manager.closed:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if message.get("type") == "subscribe":
                    ready.set()
                    backoff = 0.05
                elif message.get("type") == "message":
                    notice = LifecycleNotice.model_validate_json(message["data"])
                    yield 0, frame(notice.model_dump_json(), event=notice.type)
        except (RedisError, OSError) as exc:
            if manager.closed:
                return
            log.warning("lifecycle stream lost Redis (%s); resubscribing", exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()


class Fanout:
    """The hubs of one process: one per followed session, one for the lifecycle feed."""

    def __init__(self, manager: SessionManager, coalescing: Coalescing, heartbeat: float) -> None:
        self.manager = manager
        self.coalescing = coalescing
        self.heartbeat = heartbeat
        self.sessions: dict[str, Hub] = {}
        self.lifecycle_hub: Hub | None = None

    async def session(self, session_id: str, capacity: int) -> tuple[Hub, Subscriber]:
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
                    self.coalescing,
                    self.heartbeat,
                )
                self.sessions[session_id] = hub
                hub.start()
        return hub, hub.add(capacity)

    def _session_done(self, hub: Hub) -> None:
        if self.sessions.get(hub.name) is hub:
            del self.sessions[hub.name]

    async def lifecycle(self, capacity: int) -> tuple[Hub, Subscriber]:
        """Subscribe to the lifecycle notices of every session, once Redis confirmed the subscription."""
        hub = self.lifecycle_hub
        if hub is None or not hub.running:
            ready = asyncio.Event()
            hub = self.lifecycle_hub = Hub(
                "lifecycle",
                lambda: lifecycle_feed(self.manager, ready),
                self._lifecycle_done,
                Coalescing(0.0, 0.0, 0.0),  # rare notices: no reason to hold them back
                self.heartbeat,
            )
            hub.ready = ready
            hub.start()
        subscriber = hub.add(capacity)
        try:
            async with asyncio.timeout(LIFECYCLE_READY_TIMEOUT):
                await hub.ready.wait()
        except TimeoutError:
            hub.remove(subscriber)
            raise RedisUnavailableError("the lifecycle feed could not subscribe to Redis") from None
        return hub, subscriber

    def _lifecycle_done(self, hub: Hub) -> None:
        if self.lifecycle_hub is hub:
            self.lifecycle_hub = None

    def hubs(self) -> list[Hub]:
        """Every running hub."""
        return [*self.sessions.values(), *([self.lifecycle_hub] if self.lifecycle_hub else [])]

    async def close(self) -> None:
        """Stop every hub."""
        for hub in self.hubs():
            await hub.stop()

    def wake_all(self) -> None:
        """Wake every subscriber (e.g. so streams notice a shutdown at once)."""
        for hub in self.hubs():
            hub.wake_all()
