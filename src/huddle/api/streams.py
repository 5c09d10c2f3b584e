"""The event streams: a session's events (catch-up then live), the lifecycle feed, and replay playback."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..core.manager import SessionManager
from ..errors import EventsRolledBackError, EventsTrimmedError, HuddleError, SessionNotFoundError
from ..replay import SessionReplay
from ..replay.models import ReplayFrame, ReplayOptions
from .fanout import Coalescing, Encoded, Fanout, Hub, Subscriber, event_frame
from .limits import StreamSlots
from .problems import problem_body
from .sse import HEARTBEAT, frame


@dataclass(frozen=True)
class StreamSettings:
    """Bounds and timing of the event streams."""

    heartbeat: float = 15.0
    """Seconds between heartbeat comments on an idle stream."""
    buffer_events: int = 1024
    """Events a stream may have queued; a reader further behind is closed with its resume id."""
    max_streams: int = 1000
    """Event streams this process serves at once (503 beyond)."""
    retry_ms: int = 2000
    """The reconnect delay suggested to clients (the SSE ``retry`` field)."""
    send_timeout: float = 30.0
    """Seconds a single write may block (a reader that stopped reading) before the stream is dropped."""
    page: int = 500
    """Events read from the log per request while catching up."""
    coalesce_ms: float = 5.0
    """Live events reaching a session's streams within this window are written to each stream together
    (0 = one write per event); bounds the wake-ups per stream when many streams follow one busy session."""
    coalesce_per_stream_us: float = 10.0
    """Past ``coalesce_ms``, the window grows by this much per stream following the session (up to
    ``coalesce_max_ms``: 500 streams -> 5 ms, 1,000 -> 10 ms), so the wake-ups per second stay bounded."""
    coalesce_max_ms: float = 25.0
    """The widest coalescing window."""

    def coalescing(self) -> Coalescing:
        """The coalescing windows of these settings."""
        minimum = self.coalesce_ms / 1000
        return Coalescing(
            minimum, self.coalesce_per_stream_us / 1e6, max(minimum, self.coalesce_max_ms / 1000)
        )


def error_frame(error: HuddleError, **extra: Any) -> bytes:
    """A typed ``error`` frame: the problem document of ``error`` plus ``extra`` (e.g. ``resume_from_seq``)."""
    body = problem_body(error).model_dump(mode="json")
    body.update(extra)
    return frame(json.dumps(body, separators=(",", ":")), event="error")


class SlowReaderError(HuddleError):
    """The reader fell further behind than the stream's buffer; reconnect with the resume id."""

    code = "slow_reader"


class StreamService:
    """Serves every live stream of one app; ``close_all`` ends them with a retry hint (shutdown)."""

    def __init__(self, manager: SessionManager, settings: StreamSettings | None = None) -> None:
        self.manager = manager
        self.settings = settings or StreamSettings()
        self.fanout = Fanout(manager, self.settings.coalescing(), self.settings.heartbeat)
        self.slots = StreamSlots(self.settings.max_streams)
        self.closing = False
        self._replay_waiters: set[asyncio.Event] = set()

    def close_all(self) -> None:
        """Make every stream send a ``shutdown`` frame with a retry hint and end; refuse new ones."""
        self.closing = True
        self.fanout.wake_all()
        for waiter in self._replay_waiters:
            waiter.set()

    def _shutdown_frame(self, **extra: Any) -> bytes:
        body = {"code": "shutting_down", "retry_ms": self.settings.retry_ms, **extra}
        return frame(json.dumps(body), event="shutdown", retry_ms=self.settings.retry_ms)

    # -- a session's events -------------------------------------------------------------------------------
    async def session_events(
        self, session_id: str, from_seq: int, *, completed: bool = False
    ) -> AsyncIterator[bytes]:
        """Every event from ``from_seq`` on, exactly once and in order, then ``completed`` when it completes.

        ``completed``: the session was already completed when the stream was asked for (no live part)."""
        next_seq = max(from_seq, 1)
        if completed:
            try:
                chunk, next_seq, _ = await self._ending(session_id, None, next_seq)
            except HuddleError as exc:
                chunk = error_frame(exc, resume_from_seq=next_seq)
            yield chunk
            return
        while True:
            hub, sub = await self.fanout.session(session_id, self.settings.buffer_events)
            try:
                caught_up = False
                while not caught_up:  # catch-up from the log; the hub queues what arrives meanwhile
                    chunk, next_seq, caught_up = await self._from_log(session_id, next_seq, None)
                    if chunk:
                        yield chunk
                    if sub.overflowed:  # the log still holds everything: read on from it
                        sub.reset()
                        caught_up = False
                while True:
                    if self.closing:
                        yield self._shutdown_frame(resume_from_seq=next_seq)
                        return
                    if sub.overflowed:
                        error = SlowReaderError(f"the reader fell more than {sub.capacity} events behind")
                        yield error_frame(error, resume_from_seq=next_seq)
                        return
                    if sub.pending:
                        items, joined = sub.take()
                        first, last = items[0][0], items[-1][0]
                        if first == next_seq and last - first == len(items) - 1:
                            next_seq = last + 1  # the usual case: the frames joined once for every stream
                            yield joined
                            continue
                        chunk, next_seq = await self._fill(session_id, items, next_seq)
                        if chunk:
                            yield chunk
                        continue
                    if sub.ended:
                        chunk, next_seq, final = await self._ending(session_id, sub.error, next_seq)
                        if chunk:
                            yield chunk
                        if final:
                            return
                        break  # the hub stopped but the session goes on: follow a new hub
                    if not await sub.wait():
                        yield HEARTBEAT
            except EventsTrimmedError as exc:
                yield error_frame(exc, resume_from_seq=next_seq)
                return
            except HuddleError as exc:
                yield error_frame(exc, resume_from_seq=next_seq)
                return
            finally:
                hub.remove(sub)

    async def _from_log(self, session_id: str, next_seq: int, to_seq: int | None) -> tuple[bytes, int, bool]:
        """One page of the log from ``next_seq``: (frames, next seq, whether the log is exhausted)."""
        page = self.settings.page
        events = await self.manager.get_events(session_id, next_seq, to_seq, page)
        if events and events[0].seq != next_seq:
            raise EventsTrimmedError(
                f"events {next_seq}..{events[0].seq - 1} of session {session_id!r} were trimmed",
                session_id=session_id, first_available=events[0].seq,
            )  # fmt: skip
        chunk = b"".join(event_frame(event) for event in events)
        if events:
            next_seq = events[-1].seq + 1
        return chunk, next_seq, len(events) < page

    async def _fill(self, session_id: str, items: list[Encoded], next_seq: int) -> tuple[bytes, int]:
        """``items`` from ``next_seq`` on, as one chunk: older seqs are skipped, a gap (which a hub started late
        could leave) is read from the log."""
        parts: list[bytes] = []
        for seq, data in items:
            if seq < next_seq:
                continue
            while seq > next_seq:
                chunk, advanced, _ = await self._from_log(session_id, next_seq, seq - 1)
                if advanced == next_seq:  # the gap is gone from the log too (trimmed): resume is impossible
                    raise EventsTrimmedError(
                        f"events {next_seq}..{seq - 1} of session {session_id!r} were trimmed",
                        session_id=session_id, first_available=seq,
                    )  # fmt: skip
                parts.append(chunk)
                next_seq = advanced
            parts.append(data)
            next_seq = seq + 1
        return b"".join(parts), next_seq

    async def _ending(
        self, session_id: str, error: BaseException | None, next_seq: int
    ) -> tuple[bytes, int, bool]:
        """Once the hub ended (with ``error``): the rest of the log, then ``completed`` or an error frame;
        returns (frames, next seq, final)."""
        if isinstance(error, HuddleError):
            resume = next_seq
            if isinstance(error, EventsRolledBackError):  # a failover replaced events this stream sent
                changed = error.details.get("first_changed_seq")
                resume = min(resume, changed) if isinstance(changed, int) else resume
            return error_frame(error, resume_from_seq=resume), next_seq, True
        if error is not None:
            return error_frame(HuddleError("the event feed failed"), resume_from_seq=next_seq), next_seq, True
        parts: list[bytes] = []
        try:
            exhausted = False
            while not exhausted:
                chunk, next_seq, exhausted = await self._from_log(session_id, next_seq, None)
                parts.append(chunk)
            document = await self.manager.get_session(session_id)
        except SessionNotFoundError as exc:
            return b"".join(parts) + error_frame(exc, resume_from_seq=next_seq), next_seq, True
        if document.status != "completed":
            return b"".join(parts), next_seq, False
        body = {"session_id": session_id, "last_seq": document.last_seq, "state": document.state}
        return b"".join(parts) + frame(json.dumps(body), event="completed"), next_seq, True

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def lifecycle(self) -> AsyncIterator[bytes]:
        """Lifecycle notices of every session from now on (not replayed after a reconnect).

        Subscribed before it returns: a notice published after this call is never missed."""
        hub, sub = await self.fanout.lifecycle(self.settings.buffer_events)
        return self._lifecycle(hub, sub)

    async def _lifecycle(self, hub: Hub, sub: Subscriber) -> AsyncIterator[bytes]:
        try:
            while True:
                if self.closing:
                    yield self._shutdown_frame()
                    return
                if sub.overflowed:
                    yield error_frame(
                        SlowReaderError(f"the reader fell more than {sub.capacity} notices behind")
                    )
                    return
                if sub.pending:
                    yield sub.take()[1]
                    continue
                if sub.ended:
                    yield error_frame(
                        sub.error if isinstance(sub.error, HuddleError) else HuddleError("the feed ended")
                    )
                    return
                if not await sub.wait():
                    yield HEARTBEAT
        finally:
            hub.remove(sub)

    # -- replay playback ------------------------------------------------------------------------------------
    async def replay_frames(
        self, replay: SessionReplay, replay_id: str, options: ReplayOptions
    ) -> AsyncIterator[bytes]:
        """A recording's frames, paced by ``options.speed``, as ``frame`` events; ``end`` when done."""
        session = await replay.start_replay(replay_id, options)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)
        stop = asyncio.Event()
        self._replay_waiters.add(stop)

        async def deliver(item: ReplayFrame, _: int) -> None:
            await queue.put(
                frame(json.dumps(frame_json(item, session.info.session_id)), event="frame", id=item.index)
            )

        async def produce() -> None:
            try:
                count = await replay.play_replay(session, deliver, options)
                await queue.put(frame(json.dumps({"replay_id": replay_id, "frames": count}), event="end"))
            except HuddleError as exc:
                await queue.put(error_frame(exc))
            finally:
                await queue.put(None)

        task = asyncio.get_running_loop().create_task(produce())
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({getter, stopper}, timeout=self.settings.heartbeat,
                                             return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                stopper.cancel()
                if getter not in done:
                    getter.cancel()
                    if self.closing:
                        yield self._shutdown_frame()
                        return
                    yield HEARTBEAT
                    continue
                item = getter.result()
                if item is None:
                    return
                yield item
        finally:
            self._replay_waiters.discard(stop)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def frame_json(item: ReplayFrame, session_id: str) -> dict[str, Any]:
    """A replay frame as JSON: index, seq, time, the event and the reconstructed session state."""
    return {
        "index": item.index,
        "seq": item.seq,
        "at": item.at.isoformat(),
        "event": item.event.to_event(session_id).model_dump(mode="json", by_alias=True),
        "state": item.state.to_dict(),
        "checksum": item.checksum,
    }  # fmt: skip
