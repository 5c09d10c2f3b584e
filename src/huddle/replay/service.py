"""SessionReplay: record sessions from their event streams, play them back, verify and manage recordings."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from ..backend.connection import RedisClient, create_client
from ..core.scripts import script_source
from ..errors import (
    ReplayError,
    ReplayIntegrityError,
    ReplayNotFoundError,
    SessionNotFoundError,
    ShuttingDownError,
)
from ..ids import check_id
from ..models import Event, SessionDocument, ms_to_datetime
from . import jsonl, playback
from .codec import canonical_json, genesis_hash, snapshot_of
from .meta import check_meta
from .models import (
    EMPTY_STATE,
    ReplayConfig,
    ReplayFrame,
    ReplayInfo,
    ReplayOptions,
    ReplayState,
    ReplayStats,
    VerifyReport,
)
from .playback import Clock, ReplaySession, Sleep
from .recorder import HoldScript, Recorder, RecordingPlan
from .storage import ReplayStorage

if TYPE_CHECKING:
    from ..core.manager import SessionManager

log = logging.getLogger("huddle.replay")


MAX_PAGE = 10_000
MAX_OFFSET = 1_000_000
"""Bounds of one page of ``list_replays`` (Redis ranges must stay within a 64-bit integer)."""


def new_replay_id() -> str:
    """A fresh recording id (time-ordered prefix, random suffix)."""
    return f"rp-{int(time.time() * 1000):x}-{uuid.uuid4().hex[:12]}"


def info_from_meta(replay_id: str, meta: dict[str, str]) -> ReplayInfo:
    """A ``ReplayInfo`` from a recording's meta hash."""

    def when(name: str) -> datetime | None:
        return ms_to_datetime(meta[name]) if meta.get(name) else None

    init = json.loads(meta["init"])
    return ReplayInfo(
        replay_id=replay_id, session_id=meta["sid"], status=meta.get("status", "recording"),
        stop_reason=meta.get("reason") or None, started_at=ms_to_datetime(meta["started"]),
        ended_at=when("ended"), first_seq=int(meta.get("first_seq", "0")), last_seq=int(meta.get("last_seq", "0")),
        frames=int(meta.get("frames", "0")), segments=int(meta.get("segments", "0")),
        first_event_at=when("first_at"), last_event_at=when("last_at"), raw_bytes=int(meta.get("raw", "0")),
        stored_bytes=int(meta.get("stored", "0")), compression=meta.get("comp") == "1",
        delta=meta.get("delta") == "1", initial_state=init, metadata=json.loads(meta.get("md") or "{}"),
    )  # fmt: skip


def state_of_document(document: SessionDocument) -> ReplayState:
    """A session document as the state a recording starts from."""
    return ReplayState(
        document.last_seq, document.status, document.state, tuple(sorted(document.agents)),
        document.last_checkpoint_id, canonical_json(document.metadata),
    )  # fmt: skip


class SessionReplay:
    """Records sessions and plays recordings back (the spec's ``SessionReplay``).

    Owns a binary Redis client (frame blocks are bytes) and one task per session it records; ``close()``
    finishes every recording it runs (recording what the stream holds up to then) and closes the client."""

    def __init__(self, manager: SessionManager, config: ReplayConfig | None = None) -> None:
        self.manager = manager
        self.config = config if config is not None else ReplayConfig()
        self.client: RedisClient = create_client(manager.config, decode_responses=False)
        self.storage = ReplayStorage(self.client, manager.keys)
        self.holds = HoldScript(manager, manager.client.register_script(script_source("replay_hold")))
        self._recorders: dict[str, Recorder] = {}
        self._closed = False
        attach = getattr(manager, "attach_recorder", None)
        if attach is not None:
            attach(self._record_new_session)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Finish every recording this object runs, then release the connections (idempotent)."""
        if self._closed:
            return
        self._closed = True
        detach = getattr(self.manager, "detach_recorder", None)
        if detach is not None:
            detach(self._record_new_session)
        recorders, self._recorders = list(self._recorders.values()), {}
        for recorder in recorders:
            try:
                await recorder.stop(await self._last_seq(recorder.session_id))
            except Exception:
                log.exception("could not finish recording %s cleanly", recorder.replay_id)
                await recorder.cancel()
        await self.client.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise ShuttingDownError("this SessionReplay is closed")

    # -- recording -------------------------------------------------------------------------------------------
    async def _record_new_session(self, session_id: str) -> str:
        return await self.start_recording(session_id, from_start=True)

    async def start_recording(
        self,
        session_id: str,
        initial_state: SessionDocument | None = None,
        *,
        from_start: bool = False,
        follow: bool = True,
    ) -> str:
        """Start recording a session; returns the replay id.

        By default recording starts after the session's current last event (its current state is the initial
        state); ``from_start`` records from seq 1 (needs the whole log), ``initial_state`` from the document
        given. ``follow=False`` records only what ``record_event`` / ``stop_recording`` capture."""
        self._check_open()
        check_id(session_id)
        existing = self._recorders.get(session_id)
        if existing is not None and not existing.finalized:
            raise ReplayError(f"session {session_id!r} is already being recorded", session_id=session_id)
        if initial_state is not None and initial_state.session_id != session_id:
            raise ReplayError("initial_state belongs to another session", session_id=session_id)
        replay_id = new_replay_id()
        lease = self.config.hold_lease_seconds * 1000
        needed = 1 if from_start else (initial_state.last_seq + 1 if initial_state is not None else None)
        try:
            held, _ = await self.holds.hold(session_id, replay_id, needed, lease)
        except SessionNotFoundError:
            raise await self.manager._missing(session_id) from None
        try:
            if from_start:
                md = await self.manager.client.hget(self.manager.keys.session(session_id).meta, "md")
                initial = ReplayState(0, "", "", (), None, canonical_json(json.loads(md or "{}")))
            elif initial_state is not None:
                initial = state_of_document(initial_state)
            else:
                initial = state_of_document(await self.manager.get_session(session_id))
            plan = RecordingPlan(
                replay_id, session_id, initial, max(initial.seq + 1, 1), int(time.time() * 1000)
            )
            if plan.next_seq < held:
                raise ReplayError(f"cannot start recording at seq {plan.next_seq}: the log starts later")
            await self._create(plan)
        except BaseException:
            await self.holds.release(session_id, replay_id)
            raise
        recorder = Recorder(self.manager, self.storage, self.holds, self.config, plan)
        self._recorders[session_id] = recorder
        if follow:
            recorder.start()
        return replay_id

    async def _create(self, plan: RecordingPlan) -> None:
        cfg = self.config
        fields: dict[str, str | int] = {
            "v": 1, "sid": plan.session_id, "status": "recording", "started": plan.started_ms,
            "init": canonical_json({**snapshot_of(plan.initial), "seq": plan.initial.seq}),
            "md": plan.initial.metadata_json, "comp": int(cfg.compression_enabled),
            "delta": int(cfg.enable_delta_compression), "frames": 0, "segments": 0, "raw": 0, "stored": 0,
            "head": genesis_hash(plan.session_id, plan.initial).hex(), "first_seq": 0, "last_seq": plan.initial.seq,
        }  # fmt: skip
        if not await self.storage.create(
            plan.replay_id, fields, plan.started_ms, int(cfg.retention_days * 86_400_000)
        ):
            raise ReplayError(f"replay id {plan.replay_id!r} is taken")

    async def record_event(
        self, session_id: str, event: Event, session_state: SessionDocument | None = None
    ) -> None:
        """Make sure ``event`` (and every event before it) is in the recording of ``session_id``.

        Events are read from the session's stream, never taken from the caller, so the recording has no
        gaps; with ``session_state`` (the session right after the event) the recorded state is compared to it."""
        self._check_open()
        recorder = self._recorder(session_id)
        if event.session_id != session_id:
            raise ReplayError("the event belongs to another session", session_id=session_id)
        await recorder.capture(event.seq)
        if session_state is not None and self.config.enable_state_validation:
            if session_state.last_seq != event.seq:
                return
            recorded = recorder.encoder.state
            expected = state_of_document(session_state)
            if recorded.seq == expected.seq and (
                recorded.state,
                recorded.agents,
                recorded.status,
                recorded.checkpoint_id,
            ) != (expected.state, expected.agents, expected.status, expected.checkpoint_id):
                raise ReplayIntegrityError(
                    f"recorded state at seq {event.seq} differs from the session's",
                    recorded=recorded.to_dict(),
                    session=expected.to_dict(),
                )

    def _recorder(self, session_id: str) -> Recorder:
        recorder = self._recorders.get(session_id)
        if recorder is None:
            raise ReplayError(f"session {session_id!r} is not being recorded here", session_id=session_id)
        return recorder

    async def _last_seq(self, session_id: str) -> int | None:
        seq = await self.manager.client.hget(self.manager.keys.session(session_id).meta, "seq")
        return int(seq) if seq is not None else None

    async def stop_recording(self, session_id: str) -> str:
        """Record every event up to now, finish the recording and return its replay id."""
        check_id(session_id)
        recorder = self._recorder(session_id)
        del self._recorders[session_id]
        await recorder.stop(await self._last_seq(session_id))
        return recorder.replay_id

    def recording(self, session_id: str) -> str | None:
        """Replay id of the recording this object runs for ``session_id``, if any."""
        recorder = self._recorders.get(session_id)
        return recorder.replay_id if recorder is not None and not recorder.finalized else None

    # -- playback --------------------------------------------------------------------------------------------
    async def _meta(self, replay_id: str) -> dict[str, str]:
        check_id(replay_id, "replay id")
        meta = await self.storage.read_meta(replay_id)
        if meta is None:
            raise ReplayNotFoundError(f"replay {replay_id!r} not found", replay_id=replay_id)
        check_meta(meta)
        return meta

    async def start_replay(self, replay_id: str, options: ReplayOptions | None = None) -> ReplaySession:
        """Open a recording for playback."""
        self._check_open()
        meta = await self._meta(replay_id)
        initial = playback.initial_state_of(meta)
        return ReplaySession(
            info=info_from_meta(replay_id, meta), options=options or ReplayOptions(),
            index=await self.storage.read_index(replay_id), initial=initial,
            genesis=genesis_hash(meta["sid"], initial),
        )  # fmt: skip

    def _validate(self, options: ReplayOptions) -> bool:
        return (
            self.config.enable_state_validation if options.validate_state is None else options.validate_state
        )

    async def play_replay(
        self,
        session: ReplaySession,
        on_frame: Callable[[ReplayFrame, int], Any],
        options: ReplayOptions | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Clock | None = None,
    ) -> int:
        """Call ``on_frame(frame, n)`` (sync or async) for each selected frame, paced by recorded time / speed.

        Returns the number of frames delivered. With state validation a bad frame stops playback with
        ``ReplayIntegrityError`` (frames before it were delivered)."""
        self._check_open()
        opts = options or session.options
        return await playback.play(
            self.storage, session, on_frame, opts, validate=self._validate(opts), sleep=sleep, clock=clock
        )

    async def frames(self, session: ReplaySession, start: int = 0) -> list[ReplayFrame]:
        """Every frame from index ``start`` on, unpaced and unfiltered (for tests and tools)."""
        validate = self._validate(session.options)
        return [f async for f in playback.iter_frames(self.storage, session, start=start, validate=validate)]

    async def seek(
        self, session: ReplaySession, *, seq: int | None = None, at: datetime | None = None
    ) -> ReplayFrame | None:
        """The frame (and state) at the given seq or time; playback then starts from it."""
        if (seq is None) == (at is None):
            raise ReplayError("seek needs exactly one of seq or at")
        at_ms = int(at.timestamp() * 1000) if at is not None else None
        return await playback.seek(
            self.storage, session, seq=seq, at_ms=at_ms, validate=self._validate(session.options)
        )

    async def verify_replay(self, replay_id: str) -> VerifyReport:
        """Check the whole recording: hash chain, frame order, every state checksum, the frame count."""
        try:
            meta = await self._meta(replay_id)
            checked, error = await playback.verify(self.storage, replay_id, meta)
        except ReplayIntegrityError as exc:  # corrupt meta, seek index or key types: reported, not raised
            reason = str(exc.details.get("reason") or exc.message)
            return VerifyReport(replay_id=replay_id, ok=False, frames_checked=0, reason=reason)
        if error is None:
            return VerifyReport(replay_id=replay_id, ok=True, frames_checked=checked)
        return VerifyReport(
            replay_id=replay_id,
            ok=False,
            frames_checked=checked,
            first_bad_frame=error.frame,
            reason=error.reason,
        )

    # -- export / import -------------------------------------------------------------------------------------
    def export_replay(self, replay_id: str) -> AsyncIterator[str]:
        """The recording as JSON Lines (header, then one frame a line; no trailing newlines)."""
        self._check_open()
        return self._export(replay_id)

    async def _export(self, replay_id: str) -> AsyncIterator[str]:
        meta = await self._meta(replay_id)
        async for line in jsonl.export_lines(self.storage, replay_id, meta):
            yield line

    async def import_replay(self, lines: Iterable[str], *, replay_id: str | None = None) -> str:
        """Store an exported recording here (keeping its id unless ``replay_id``); verified before writing."""
        self._check_open()
        return await jsonl.import_lines(
            self.storage,
            lines,
            compression_level=self.config.compression_level,
            retention_days=self.config.retention_days,
            replay_id=replay_id,
        )

    # -- management ------------------------------------------------------------------------------------------
    async def get_replay(self, replay_id: str) -> ReplayInfo | None:
        """A recording's description, or None."""
        check_id(replay_id, "replay id")
        meta = await self.storage.read_meta(replay_id)
        if meta is None:
            return None
        check_meta(meta)
        return info_from_meta(replay_id, meta)

    async def list_replays(self, limit: int = 50, offset: int = 0) -> list[ReplayInfo]:
        """Recordings newest first, from the replay index (entries of expired recordings are dropped)."""
        if not 1 <= limit <= MAX_PAGE or not 0 <= offset <= MAX_OFFSET:
            raise ReplayError(f"bad page: limit={limit} (1..{MAX_PAGE}) offset={offset} (0..{MAX_OFFSET})")
        entries = await self.storage.newest(offset + limit)
        page = [replay_id for replay_id, _ in entries[offset:]]
        metas = await self.storage.read_metas(page)
        gone = [rid for rid, meta in zip(page, metas, strict=True) if meta is None]
        if gone:
            await self.storage.unindex(gone)
        for meta in metas:
            if meta is not None:
                check_meta(meta)
        return [info_from_meta(rid, meta) for rid, meta in zip(page, metas, strict=True) if meta is not None]

    async def delete_replay(self, replay_id: str) -> bool:
        """Delete a recording; True if it existed. A recording still running here is stopped first."""
        check_id(replay_id, "replay id")
        for session_id, recorder in list(self._recorders.items()):
            if recorder.replay_id == replay_id:
                del self._recorders[session_id]
                await recorder.cancel()
        return await self.storage.delete(replay_id)

    async def cleanup_old_replays(self, older_than_days: float) -> int:
        """Delete finished recordings that started more than ``older_than_days`` ago; returns how many."""
        if older_than_days < 0:
            raise ReplayError(f"older_than_days must be >= 0, got {older_than_days}")
        cutoff = int((time.time() - older_than_days * 86_400) * 1000)
        running = {recorder.replay_id for recorder in self._recorders.values()}
        deleted = 0
        for replay_id in await self.storage.started_before(cutoff):
            if replay_id not in running and await self.storage.delete(replay_id):
                deleted += 1
        return deleted

    async def get_replay_stats(self) -> ReplayStats:
        """Totals over every recording: frames, raw (full state per frame) vs stored bytes, measured."""
        entries = await self.storage.newest(None)
        ids = [replay_id for replay_id, _ in entries]
        metas: list[dict[str, str] | None] = []
        for start in range(0, len(ids), 500):
            metas.extend(await self.storage.read_metas(ids[start : start + 500]))
        found = [meta for meta in metas if meta is not None]
        raw = sum(int(meta.get("raw", "0")) for meta in found)
        stored = sum(int(meta.get("stored", "0")) for meta in found)
        starts = [int(meta["started"]) for meta in found]
        return ReplayStats(
            total_replays=len(found), recording=sum(meta.get("status") == "recording" for meta in found),
            total_frames=sum(int(meta.get("frames", "0")) for meta in found), raw_bytes=raw, stored_bytes=stored,
            storage_reduction=1 - stored / raw if raw else 0.0,
            oldest=ms_to_datetime(min(starts)) if starts else None,
            newest=ms_to_datetime(max(starts)) if starts else None,
        )  # fmt: skip


__all__ = ["EMPTY_STATE", "SessionReplay"]
