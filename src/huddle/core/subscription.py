"""Following a session's events (stream catch-up then live) and the global lifecycle feed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import RedisError, ResponseError

from ..errors import EventsRolledBackError, EventsTrimmedError, RedisUnavailableError
from ..models import Event, LifecycleNotice
from .store import REDIS_DOWN

if TYPE_CHECKING:
    from .store import Fingerprinted, SessionStore

log = logging.getLogger("huddle.core.subscription")

BATCH = 200
MAX_BACKOFF = 2.0
# How many delivered events a subscription remembers (as fingerprints) to find what a failover replaced.
WINDOW = 512


# The reply's own text, or redis-py's pipeline wrapping: "Command # 2 (...) of pipeline caused error: ('UNBLOCKED ..."
_INTERRUPTED = re.compile(
    r"(?:^|of pipeline caused error: \(['\"])(?:UNBLOCKED|READONLY|LOADING|MASTERDOWN) "
)


def _interrupted(exc: ResponseError) -> bool:
    """A blocked read ended because the server changed role (failover, REPLICAOF): ask again, elsewhere."""
    return _INTERRUPTED.search(str(exc)) is not None


class _Delivered:
    """Fingerprints of the last ``WINDOW`` events delivered, to tell after a reconnect whether they still stand."""

    def __init__(self) -> None:
        self.ring: list[int] = [0] * WINDOW
        self.first = 0  # the first seq delivered (0: none yet)
        self.last = 0

    def add(self, event: Event, fingerprint: int) -> None:
        self.ring[event.seq % WINDOW] = fingerprint
        self.first = self.first or event.seq
        self.last = event.seq

    def window_start(self) -> int:
        """The first delivered seq still remembered."""
        return max(self.first, self.last - WINDOW + 1)

    def first_changed(self, bounds: tuple[int, int] | None, window: list[Fingerprinted]) -> int | None:
        """The first delivered seq whose stored event (``window``: the events window_start()..last as one server
        holds them, ``bounds`` its (first, last seq)) differs or is gone, None if all stand.

        Only the last ``WINDOW`` delivered are remembered: when the change reaches back to the window's start (or
        the log now ends below it), the first seq that cannot be vouched for is named (all delivered still in
        the log), so re-reading from it never skips a replaced event."""
        if not self.last or bounds is None:
            return None  # nothing delivered, or the session is gone (the read loop ends on that)
        log_first, log_last = bounds
        floor = max(self.first, log_first)  # below log_first: trimmed, not changed
        start = max(floor, self.window_start())
        for event, fingerprint in window:
            if event.seq < start:
                continue
            if fingerprint != self.ring[event.seq % WINDOW]:
                return floor if event.seq == start else event.seq
        if log_last >= self.last:
            return None
        return floor if log_last < start else log_last + 1


def _rolled_back(session_id: str, changed: int, last: int) -> EventsRolledBackError:
    return EventsRolledBackError(
        f"events {changed}..{last} of session {session_id!r} were delivered, then lost by a Redis failover and "
        f"replaced; resubscribe from seq {changed}",
        session_id=session_id, first_changed_seq=changed, last_delivered_seq=last,
    )  # fmt: skip


class FeedOwner(Protocol):
    """What a feed needs from the object that owns it (a ``SessionManager``): its store, and whether it closed."""

    @property
    def store(self) -> SessionStore: ...

    @property
    def closed(self) -> bool: ...


async def follow(
    manager: FeedOwner,
    session_id: str,
    from_seq: int,
    *,
    block_ms: int,
    missing: Callable[[str], Awaitable[Exception]],
) -> AsyncIterator[Event]:
    """Yield every event with seq >= from_seq exactly once, in order; see ``SessionManager.subscribe``.

    The stream is the source of truth: XREAD BLOCK from the last seq delivered, so nothing written during the
    hand-over from catch-up to live can be skipped or repeated, and after a reconnect reading resumes at the
    next seq. A gap between the seq expected and the seq read can only mean trimming, which is reported."""
    store = manager.store
    bounds = await store.first_and_last_seq(session_id)
    if bounds is None:
        raise await missing(session_id)
    next_seq = max(from_seq, 1)
    if next_seq < bounds[0]:
        raise EventsTrimmedError(
            f"events {next_seq}..{bounds[0] - 1} of session {session_id!r} were trimmed",
            session_id=session_id, first_available=bounds[0],
        )  # fmt: skip
    backoff = 0.05
    delivered = _Delivered()
    reconnected = False
    while not manager.closed:
        try:
            # After a failover with asynchronous replication the new master may lack events this subscription
            # delivered and reuse their seqs for others: resuming at next_seq would skip those. Each read also
            # returns the last delivered event as that server stores it (same pipeline, so also after a retry
            # the client made on its own): logs diverge only after the seq where two servers' histories split,
            # so a matching last event vouches for all delivered before it. On a mismatch (or after an outage)
            # the remembered window, the bounds and what follows are read in one pipeline from one server and
            # compared: a change ends the subscription, else that server's events are delivered.
            events: list[Fingerprinted] = []
            if delivered.last and reconnected:
                suspect = True
            else:
                current, events = await store.read_events_after_checked(
                    session_id, next_seq - 1, BATCH, max(block_ms, 10)
                )
                suspect = bool(delivered.last) and (
                    current is None or current[1] != delivered.ring[current[0].seq % WINDOW]
                )
            if suspect:
                bounds, window, events = await store.read_window_and_after(
                    session_id, delivered.window_start(), next_seq - 1, BATCH
                )
                changed = delivered.first_changed(bounds, window)
                if changed is not None:
                    raise _rolled_back(session_id, changed, delivered.last)
            reconnected = False
            if not events:
                status = await store.status_and_seq(session_id)
                if status is None:
                    return  # expired or deleted: no event will come any more
                if status[0] == "completed" and status[1] < next_seq:
                    # The end, as one server sees it: check first that what was delivered stands there.
                    bounds, window, _ = await store.read_window_and_after(
                        session_id, delivered.window_start(), next_seq - 1, 1
                    )
                    changed = delivered.first_changed(bounds, window)
                    if changed is None:
                        return
                    raise _rolled_back(session_id, changed, delivered.last)
                continue
        except (RedisUnavailableError, ResponseError, *REDIS_DOWN) as exc:  # an outage: resume; else raised
            if isinstance(exc, ResponseError) and not _interrupted(exc):
                raise
            if manager.closed:
                return
            log.warning("subscription to %s lost Redis (%s); resuming at seq %d", session_id, exc, next_seq)
            reconnected = True
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            continue
        backoff = 0.05
        for event, fingerprint in events:
            if event.seq != next_seq:
                raise EventsTrimmedError(
                    f"events {next_seq}..{event.seq - 1} of session {session_id!r} were trimmed before they were read",
                    session_id=session_id, first_available=event.seq,
                )  # fmt: skip
            next_seq += 1
            delivered.add(event, fingerprint)
            yield event


async def lifecycle(manager: FeedOwner) -> AsyncIterator[LifecycleNotice]:
    """Yield lifecycle notices from the global channel until the manager closes; reconnects by itself."""
    backoff = 0.05
    while not manager.closed:
        pubsub = manager.store.client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(manager.store.keys.global_channel)
            backoff = 0.05
            while not manager.closed:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    yield LifecycleNotice.model_validate_json(message["data"])
        except (RedisError, OSError) as exc:
            if manager.closed:
                return
            log.warning("lifecycle feed lost Redis (%s); resubscribing", exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()


async def session_notices(manager: FeedOwner, session_id: str) -> AsyncIterator[dict[str, Any]]:
    """Yield the per-event notifications of one session (``session_id``, ``seq``, ``type``, ``actor``, ``last_seq``).

    Sharded pub/sub (SSUBSCRIBE on the node of the session's slot) on a Redis Cluster of 7.0+, where emit.lua
    uses SPUBLISH; classic SUBSCRIBE elsewhere. Pub/sub may drop notices: ``subscribe()`` is the complete feed."""
    channel = manager.store.keys.session_channel(session_id)
    backoff = 0.05
    while not manager.closed:
        pubsub = manager.store.client.pubsub(ignore_subscribe_messages=True)
        try:
            sharded = await manager.store.publish_command() == "SPUBLISH"
            if sharded:
                await pubsub.ssubscribe(channel)
            else:
                await pubsub.subscribe(channel)
            backoff = 0.05
            while not manager.closed:
                if sharded:
                    message = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=1.0)
                else:
                    message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") in ("message", "smessage"):
                    yield json.loads(message["data"])
        except (RedisError, OSError) as exc:
            if manager.closed:
                return
            log.warning("notices of %s lost Redis (%s); resubscribing", session_id, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
