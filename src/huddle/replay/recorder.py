"""Recorder: follows one session's event stream and writes it as chained, compressed frames.

The stream is the source of truth: the recorder reads it with XREAD (BLOCK when caught up), so events that
other processes emit are recorded as surely as our own. While it runs it holds the events it has not read
yet (``replay_hold.lua``), so trimming at ``max_events_per_session`` can never cost the recording an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import zstandard
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from ..core.scripts import translate_script_error
from ..core.store import REDIS_DOWN, redis_boundary
from ..errors import EventsTrimmedError, HuddleError, RedisUnavailableError, SessionNotFoundError
from .codec import HASH_HEX, EncodedFrame, FrameEncoder, apply_event, pack_segment, parse_json
from .models import RecordedEvent, ReplayConfig, ReplayState
from .storage import ReplayStorage

if TYPE_CHECKING:
    from ..core.manager import SessionManager

log = logging.getLogger("huddle.replay")


class HoldScript:
    """``replay_hold.lua`` on the manager's client: set, renew or release a recording's hold."""

    def __init__(self, manager: SessionManager, script: AsyncScript) -> None:
        self.manager = manager
        self.script = script

    @redis_boundary
    async def _run(self, session_id: str, args: list[str | int]) -> tuple[int, int, int]:
        keys = self.manager.keys
        try:
            held, last, first = await self.script(
                keys=[*keys.session(session_id).all, keys.replay_holds(session_id)], args=args
            )
        except ResponseError as exc:
            error = translate_script_error(exc)
            if isinstance(error, HuddleError) and "events_trimmed" in str(error):
                raise EventsTrimmedError(
                    f"session {session_id!r} no longer has the events a recording needs",
                    session_id=session_id,
                ) from exc
            raise error from exc
        return int(held), int(last), int(first)

    async def hold(
        self, session_id: str, replay_id: str, needed: int | None, lease_ms: int
    ) -> tuple[int, int]:
        """Hold events from ``needed`` on (None = from the next one); returns (seq held, session's last seq)."""
        held, last, _ = await self._run(
            session_id, [session_id, replay_id, "set", "" if needed is None else needed, lease_ms]
        )
        return held, last

    async def release(self, session_id: str, replay_id: str) -> None:
        """Drop the recording's hold."""
        await self._run(session_id, [session_id, replay_id, "release", "", 0])


@dataclass(slots=True)
class RecordingPlan:
    """Where a recording starts."""

    replay_id: str
    session_id: str
    initial: ReplayState
    next_seq: int
    started_ms: int


class Recorder:
    """Records one session into one replay; ``follow`` runs a task that tails the stream."""

    def __init__(
        self,
        manager: SessionManager,
        storage: ReplayStorage,
        holds: HoldScript,
        config: ReplayConfig,
        plan: RecordingPlan,
    ) -> None:
        self.manager = manager
        self.storage = storage
        self.holds = holds
        self.config = config
        self.replay_id = plan.replay_id
        self.session_id = plan.session_id
        self.cursor = plan.next_seq
        self.started_ms = plan.started_ms
        self.deadline_ms = plan.started_ms + config.max_replay_duration * 1000
        self.encoder = FrameEncoder(
            plan.session_id, plan.initial, delta=config.enable_delta_compression,
            snapshot_every=config.snapshot_every_frames, snapshot_interval_ms=config.snapshot_interval * 1000,
        )  # fmt: skip
        self._compressor = (
            zstandard.ZstdCompressor(level=config.compression_level) if config.compression_enabled else None
        )
        self._retention_ms = int(config.retention_days * 86_400_000)
        self._lease_ms = config.hold_lease_seconds * 1000
        self._open: list[bytes] = []
        self._open_stored = 0
        self._open_in_redis = False
        self._stored = 0
        self._segments = 0
        self._raw = 0
        self._frames_stored = 0
        self._head = self.encoder.chain.hex()
        self._first_seq: int | None = None
        self._first_at: int | None = None
        self._lock = asyncio.Lock()
        self._stop_at: int | None = None
        self._stop = asyncio.Event()
        self._held_at = 0.0
        self._held_seq = plan.next_seq
        self._flushed_next = plan.next_seq
        self._pending: list[EncodedFrame] = []
        self._last_flush = time.monotonic()
        self.end_reason: str | None = None
        """Why the recording ended (or must end)."""
        self._finalized = False
        self._task: asyncio.Task[None] | None = None

    # -- running ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start following the stream in a task owned by this recorder."""
        self._task = asyncio.create_task(self._follow(), name=f"huddle-replay-{self.replay_id}")

    @property
    def finalized(self) -> bool:
        """True once the recording is finished (stored as complete)."""
        return self._finalized

    @property
    def running(self) -> bool:
        """True while the follow task runs."""
        return self._task is not None and not self._task.done()

    async def _follow(self) -> None:
        reason = "stopped"
        backoff = 0.05
        try:
            while True:
                if self._finalized:
                    return
                if self._stop_at is not None and self.cursor > self._stop_at:
                    break
                try:
                    stopping = self._stop_at is not None
                    entries = await self._next_entries()
                    if entries is None:
                        reason = "session_ended"
                        break
                    if not entries and stopping:
                        break  # stopping and nothing more to read (e.g. the session expired meanwhile)
                    if entries:
                        async with self._lock:
                            if await self._record(entries):
                                return
                    elif self._pending:
                        async with self._lock:
                            await self._flush()
                    await self._renew_hold()
                    backoff = 0.05
                    if entries and len(entries) < self.config.read_batch and self._stop_at is None:
                        await self._pause()  # let events accumulate: fewer, larger reads and writes
                except (RedisUnavailableError, *REDIS_DOWN) as exc:
                    log.warning(
                        "recording %s lost Redis (%s); resuming at seq %d", self.replay_id, exc, self.cursor
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                except EventsTrimmedError:
                    reason = "events_trimmed"
                    break
                except SessionNotFoundError:
                    reason = "session_ended"  # it expired between our read and the hold renewal
                    break
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        except Exception:
            log.exception("recording %s of session %s failed", self.replay_id, self.session_id)
            reason = "error"
        finally:
            if not self._finalized:
                await asyncio.shield(self._finalize(reason))

    async def _next_entries(self) -> list[tuple[str, dict[str, str]]] | None:
        """The next events (may be []); None once the session is gone and every event was read."""
        if self._stop_at is not None:
            return await self._xread(None)
        if time.time() * 1000 > self.deadline_ms:
            self.end_reason = "max_duration"
            return None
        block = self.config.block_ms
        if self._pending:
            due = self._last_flush + self.config.flush_interval_ms / 1000 - time.monotonic()
            block = max(int(due * 1000), 1)
        read = asyncio.ensure_future(self._xread(block))
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not read.done():
                read.cancel()
                with contextlib.suppress(asyncio.CancelledError, *REDIS_DOWN):
                    await read
        if read not in done or read.cancelled():
            return []
        entries = read.result()
        if not entries and not await self.manager.client.exists(
            self.manager.keys.session(self.session_id).meta
        ):
            return None
        return entries

    @redis_boundary
    async def _xread(self, block: int | None) -> list[tuple[str, dict[str, str]]]:
        stream = self.manager.keys.session(self.session_id).events
        reply = await self.manager.client.xread(
            {stream: f"0-{self.cursor - 1}"}, count=self.config.read_batch, block=block
        )
        if not reply:
            return []
        entries: list[tuple[str, dict[str, str]]] = (
            reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        )
        return entries

    async def _pause(self) -> None:
        if self.config.poll_ms:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races the event.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll_ms / 1000):
                    await self._stop.wait()

    async def _renew_hold(self, force: bool = False) -> None:
        """Move the hold up to the first event not stored yet (after each flush) and renew its lease."""
        now = time.monotonic()
        if force or self._flushed_next > self._held_seq or now - self._held_at >= self._lease_ms / 3000:
            await self.holds.hold(self.session_id, self.replay_id, self._flushed_next, self._lease_ms)
            self._held_at, self._held_seq = now, self._flushed_next

    # -- recording -------------------------------------------------------------------------------------------
    async def _record(self, entries: list[tuple[str, dict[str, str]]]) -> bool:
        """Encode and store a batch (under the lock); True if the recording must end."""
        encoded: list[EncodedFrame] = []
        state = self.encoder.state
        must_end = False
        for entry_id, fields in entries:
            seq = int(entry_id[2:])
            if seq < self.cursor:
                continue  # already recorded (capture() and the follow task may read the same entries)
            if seq != self.cursor:
                self.end_reason = "events_trimmed"
                log.error("recording %s: events %d..%d were lost", self.replay_id, self.cursor, seq - 1)
                must_end = True
                break
            at = int(fields["ts"])
            if at > self.deadline_ms:
                self.end_reason = "max_duration"
                must_end = True
                break
            if self._stop_at is not None and seq > self._stop_at:
                must_end = True
                break
            event = RecordedEvent(seq, fields["t"], fields["a"], at, parse_json(fields.get("d") or "{}"))
            state = apply_event(state, event)
            encoded.append(self.encoder.encode(event, state))
            self.cursor = seq + 1
        self._pending.extend(encoded)
        if must_end or len(self._pending) >= 4 * self.config.read_batch or self._flush_due():
            await self._flush()
        if must_end:
            await self._finalize("stopped")
        return must_end

    def _flush_due(self) -> bool:
        return time.monotonic() - self._last_flush >= self.config.flush_interval_ms / 1000

    async def _flush(self) -> None:
        """Store the frames encoded since the last flush (one MULTI); on failure they stay pending."""
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        await self._store(self._pending)
        self._flushed_next = self._pending[-1].seq + 1
        self._pending = []

    async def _store(self, frames: list[EncodedFrame]) -> None:
        """Append frames: the open block is rewritten, blocks started here are pushed, all in one MULTI.

        Nothing of the recorder's own bookkeeping changes unless the write succeeded, so a failed write is
        simply retried with the same frames (a MULTI is all or nothing)."""
        old_open = list(self._open)
        current = old_open
        grew_old = False
        started: list[list[bytes]] = []
        new_index: list[dict[str, Any]] = []
        raw, first = self._raw, (self._first_seq, self._first_at)
        for frame in frames:
            if frame.starts_segment:
                current = []
                started.append(current)
                new_index.append({"i": frame.index, "q": frame.seq, "t": frame.at_ms, "p": frame.chain.hex()})
            elif current is old_open:
                grew_old = True
            current.append(frame.line)
            raw += frame.raw_bytes
            if first[0] is None:
                first = (frame.seq, frame.at_ms)
        stored, open_stored = self._stored, self._open_stored
        replace_last = None
        if grew_old and self._open_in_redis:
            replace_last = pack_segment(old_open, self._compressor)
            stored += len(replace_last) - open_stored
            open_stored = len(replace_last)
        new_segments = [pack_segment(lines, self._compressor) for lines in started]
        if new_segments:
            stored += sum(len(blob) for blob in new_segments)
            open_stored = len(new_segments[-1])
        last = frames[-1]
        fields: dict[str, str | int] = {
            "frames": last.index + 1, "segments": self._segments + len(started), "raw": raw, "stored": stored,
            "head": last.line[:HASH_HEX].decode(), "last_seq": last.seq, "last_at": last.at_ms,
        }  # fmt: skip
        if first[0] is not None and first[1] is not None:
            fields.update(first_seq=first[0], first_at=first[1])
        await self.storage.write_batch(
            self.replay_id, replace_last=replace_last, new_segments=new_segments, new_index=new_index,
            fields=fields, retention_ms=self._retention_ms,
        )  # fmt: skip
        self._open, self._open_in_redis = current, True
        self._segments += len(started)
        self._raw, self._stored, self._open_stored = raw, stored, open_stored
        self._first_seq, self._first_at = first
        self._frames_stored, self._head = last.index + 1, last.line[:HASH_HEX].decode()

    def _progress_fields(self) -> dict[str, str | int]:
        """Meta counters of what is stored (never of frames still pending)."""
        fields: dict[str, str | int] = {
            "frames": self._frames_stored, "segments": self._segments, "raw": self._raw, "stored": self._stored,
            "head": self._head,
        }  # fmt: skip
        if self._first_seq is not None and self._first_at is not None:
            fields.update(first_seq=self._first_seq, first_at=self._first_at)
        return fields

    # -- stopping --------------------------------------------------------------------------------------------
    async def capture(self, until_seq: int) -> None:
        """Record every event up to ``until_seq`` now (manual ``record_event`` and stopping)."""
        while self.cursor <= until_seq and not self._finalized:
            entries = await self._xread(None)
            if not entries:
                return
            async with self._lock:
                await self._record([e for e in entries if int(e[0][2:]) <= until_seq])
                await self._flush()

    async def stop(self, until_seq: int | None, reason: str = "stopped") -> None:
        """Record up to ``until_seq`` (None: what is there now), then finish the recording."""
        self._stop_at = until_seq if until_seq is not None else self.cursor - 1
        self._stop.set()
        if self._task is not None:
            await asyncio.shield(self._task)
        else:
            if until_seq is not None:
                await self.capture(until_seq)
            await self._finalize(reason)

    async def cancel(self) -> None:
        """Stop following at once (what was recorded stays, finished as 'cancelled')."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._finalize("cancelled")

    async def _finalize(self, reason: str) -> None:
        if self._finalized:
            return
        self._finalized = True
        reason = self.end_reason or reason
        self.end_reason = reason
        try:
            await self._flush()
        except HuddleError as exc:
            log.warning("recording %s lost its last %d frames: %s", self.replay_id, len(self._pending), exc)
        try:
            fields = self._progress_fields()
            fields.update(status="complete", reason=reason, ended=int(time.time() * 1000))
            await self.storage.set_fields(self.replay_id, fields, self._retention_ms)
        except HuddleError as exc:
            log.warning("could not finish recording %s: %s", self.replay_id, exc)
        try:
            await self.holds.release(self.session_id, self.replay_id)
        except HuddleError as exc:
            log.warning(
                "could not release the hold of recording %s (its lease ends it): %s", self.replay_id, exc
            )
