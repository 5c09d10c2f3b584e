"""SessionManager's append path (``emit_event``, ``emit_events``) and the helpers every mutation shares.

``SessionManager`` (core/manager.py) inherits ``EmitMethods`` and sets the attributes declared here in its
``__init__``; the split keeps both modules readable.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from redis.exceptions import AuthenticationError, ResponseError

from ..backend.autopipeline import marks_resends, retry_mark
from ..config import SessionManagerConfig
from ..errors import (
    HuddleError,
    InvalidEventError,
    ReplicationNotConfirmedError,
    SessionExpiredError,
    SessionNotFoundError,
    ShuttingDownError,
)
from ..ids import check_id
from ..models import SessionEvent
from .event_input import batch_parts, check_expected_seq, event_parts
from .keys import KeySpace, SessionKeys
from .store import REDIS_DOWN, EmitResult, SessionStore, boundary_error

log = logging.getLogger("huddle.core.manager")

OperationObserver = Callable[[str, float, bool], None]
"""Called after every manager operation with (operation, seconds, succeeded)."""

P = ParamSpec("P")
T = TypeVar("T")
M = TypeVar("M", bound="EmitMethods")


def tracked_in_flight(
    method: Callable[Concatenate[M, P], Awaitable[T]],
) -> Callable[Concatenate[M, P], Awaitable[T]]:
    """Count a mutation as in flight while it runs, so a shutdown can wait for it (no lock: one loop)."""

    @functools.wraps(method)
    async def tracked(self: M, /, *args: P.args, **kwargs: P.kwargs) -> T:
        self._in_flight += 1
        try:
            return await method(self, *args, **kwargs)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()

    return tracked


class EmitMethods:
    """Appending events, plus the checks, observation and index upkeep shared by every manager mutation."""

    config: SessionManagerConfig
    keys: KeySpace
    store: SessionStore
    _observers: list[OperationObserver]
    _closed: bool
    _draining: bool
    _in_flight: int
    _idle: asyncio.Event | None
    _failure_csv: str
    _failure_ttl_ms: str
    _session_keys: Callable[[str], SessionKeys]
    _emit_keys: Callable[[str], tuple[SessionKeys, list[str]]]
    _valid_ids: set[str]
    """Ids that passed ``check_id`` (bounded): agents and sessions repeat on every event."""
    _token_prefix: str
    _token_counter: itertools.count[int]
    """Retry tokens only have to be unique: a random prefix per manager and a counter, no syscall per event."""

    _emit_settings: dict[tuple[bool, bool], str] | None = None
    """emit.lua's ARGV[9] per (reset_ttl, auto_checkpoint): the manager's settings in one argument."""
    _resends_marked: bool | None = None
    """True when the client flips a command's retry mark once it is on the wire (emit.lua mode 'f')."""

    def _check_open(self, *, mutation: bool = True) -> None:
        if self._closed:
            raise ShuttingDownError("the session manager is closed")
        if mutation and self._draining:
            raise ShuttingDownError("the session manager is shutting down and accepts no new work")

    def _observe(self, operation: str, started: float, ok: bool) -> None:
        elapsed = time.perf_counter() - started
        for observer in self._observers:
            try:
                observer(operation, elapsed, ok)
            except Exception:
                log.exception("operation observer failed for %s", operation)

    def _build_emit_keys(self, session_id: str) -> tuple[SessionKeys, list[str]]:
        keys = self._session_keys(session_id)
        return keys, keys.emit

    def _check_ids(self, session_id: str, actor: str) -> None:
        """``check_id`` of both, remembering ids that passed (the set is bounded: cleared when large)."""
        valid = self._valid_ids
        # (str only: a list/dict id must reach check_id's typed error, not an unhashable-type TypeError)
        if session_id.__class__ is str and actor.__class__ is str and session_id in valid and actor in valid:
            return
        check_id(session_id)
        check_id(actor, "agent id")
        if len(valid) > 8192:
            valid.clear()
        valid.add(session_id)
        valid.add(actor)

    async def emit_settings(self, reset_ttl: bool = True, auto_checkpoint: bool = True) -> str:
        """emit.lua's settings argument (see emit_settings in common.lua), built once per combination."""
        cache = self._emit_settings
        if cache is None:
            cache = self._emit_settings = {}
        cfg = self.config
        publish = await self.store.publish_command()
        interval = cfg.checkpoint_interval if auto_checkpoint and cfg.enable_auto_checkpoint else 0
        text = (
            f"{1 if reset_ttl else 0}:{interval}:{cfg.max_events_per_session}:{cfg.index_refresh_ms}:"
            f"{cfg.max_checkpoints_per_session}:{cfg.failure_snapshot_events}:{self._failure_ttl_ms}:{publish}:"
            f"{self._failure_csv}"
        )
        cache[(reset_ttl, auto_checkpoint)] = text
        return text

    def _retry_token(self) -> str:
        return f"{self._token_prefix}{next(self._token_counter):x}"

    async def _missing(self, session_id: str) -> SessionNotFoundError:
        """NotFound or Expired: the activity index still knows sessions that expired."""
        try:
            score = await self.store.active_score(session_id)
        except HuddleError:
            score = None
        if score is not None:
            return SessionExpiredError(f"session {session_id!r} has expired", session_id=session_id)
        return SessionNotFoundError(f"session {session_id!r} not found", session_id=session_id)

    async def _best_effort(self, update: Any) -> None:
        """Index updates after a successful script: failing them must not fail the (done) mutation."""
        try:
            await update
        except HuddleError as exc:
            log.warning("index update failed (perform_maintenance or the next event repairs it): %s", exc)

    # -- events ---------------------------------------------------------------------------------------------
    async def emit_event(
        self,
        session_id: str,
        event: SessionEvent | Mapping[str, Any],
        actor: str,
        *,
        expected_seq: int | None = None,
        idempotency_key: str | None = None,
        reset_ttl: bool = True,
        auto_checkpoint: bool = True,
        publish_update: bool = True,
        min_replicas: int = 0,
    ) -> int:
        """Append an event as ``actor``; returns its sequence number.

        ``expected_seq``: refuse (``SequenceConflictError``) unless the session's last seq equals it.
        ``idempotency_key``: a retried call with the same key returns the first call's seq, writing nothing.
        A state transition whose ``from`` is not the current state raises ``StateConflictError``.
        ``min_replicas``: also wait (``WAIT``, up to ``replica_wait_timeout_ms``) until that many replicas have
        the event; if fewer confirm it, raise ``ReplicationNotConfirmedError`` (the event is written, but a
        failover now could lose it). See docs/scaling.md for what this does and does not guarantee."""
        # The in-flight count of @tracked_in_flight, inlined: one coroutine less on the path of every event.
        self._in_flight += 1
        try:
            self._check_open()
            started = time.perf_counter() if self._observers else 0.0
            self._check_ids(session_id, actor)
            etype, payload, from_state, to_state = event_parts(event, self.config.max_event_bytes)
            expected = "" if expected_seq is None else check_expected_seq(expected_seq)
            if min_replicas.__class__ is not int or not 0 <= min_replicas <= 100:  # bool is not int here
                raise InvalidEventError(f"min_replicas must be an integer 0..100, got {min_replicas!r}")
            cfg = self.config
            keys, emit_keys = self._emit_keys(session_id)
            settings = (self._emit_settings or {}).get(
                (reset_ttl, auto_checkpoint)
            ) or await self.emit_settings(reset_ttl, auto_checkpoint)
            mode: str | memoryview
            if idempotency_key is not None:
                token, mode = check_id(idempotency_key, "idempotency key"), "k"
            else:
                token = self._retry_token()
                marked = self._resends_marked
                if marked is None:
                    marked = self._resends_marked = marks_resends(self.store.client)
                # 'f': the auto-pipeline turns the byte into 'r' once the command is on the wire, so a re-send
                # checks for the first send's event; any other path re-sends the same bytes: 'z' (zset claim).
                mode = retry_mark() if marked and not min_replicas else "z"
            args: list[str | int | memoryview] = [
                session_id, actor, etype, payload, token, expected, from_state, to_state, settings,
                keys.channel if publish_update else "", mode,
            ]  # fmt: skip
            # WAIT must answer within the socket timeout, or the connection would be dropped as dead.
            wait_ms = (
                min(cfg.replica_wait_timeout_ms, max(int(cfg.socket_timeout * 1000) - 250, 1))
                if min_replicas
                else 0
            )
            ok = False
            try:
                result = await self._run_emit(emit_keys, args, min_replicas, wait_ms)
                ok = True
            except SessionNotFoundError:
                raise await self._missing(session_id) from None
            finally:
                if self._observers:
                    self._observe("emit", started, ok)
            if not isinstance(result, EmitResult):
                return result  # the seq alone: nothing else to do
            if result.index_due:
                await self._best_effort(self.store.touch_active(session_id, result.at_ms))
            if result.failure_snapshot_id:
                await self._best_effort(self.store.index_failure(session_id, result.failure_snapshot_id))
            if result.replicas_acked is not None and result.replicas_acked < min_replicas:
                raise ReplicationNotConfirmedError(
                    f"event seq {result.seq} is written on the master, but only {result.replicas_acked} of "
                    f"{min_replicas} replicas confirmed it within {wait_ms} ms; a failover now could lose it",
                    seq=result.seq, replicas_acked=result.replicas_acked, min_replicas=min_replicas,
                )  # fmt: skip
            return result.seq
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def _run_emit(
        self, emit_keys: list[str], args: list[Any], min_replicas: int, wait_ms: int
    ) -> int | EmitResult:
        """Run emit.lua (with ``min_replicas`` also WAIT up to ``wait_ms``); just the seq in the common case.

        Redis errors become huddle's at this boundary (inlined: one coroutine less on the path of every event)."""
        scripts = self.store.scripts
        try:
            acked: int | None = None
            if min_replicas > 0:
                reply, acked = await scripts.run_and_wait(
                    self.store.client, "emit", emit_keys, args, min_replicas, wait_ms
                )
            else:
                reply = await scripts.run("emit", emit_keys, args)
        except (AuthenticationError, ResponseError, *REDIS_DOWN) as exc:
            converted = boundary_error(exc)
            if converted is None:
                raise
            raise converted from exc
        if reply.__class__ is int:  # only the seq: nothing else happened (see emit.lua)
            return reply if acked is None else EmitResult(reply, False, None, False, None, reply, 0, acked)
        seq, due, cp_id, dup, failure_id, last, now = reply
        return EmitResult(
            int(seq), bool(due), cp_id or None, bool(dup), failure_id or None, int(last), int(now), acked
        )

    @tracked_in_flight
    async def emit_events(
        self,
        session_id: str,
        events: Sequence[SessionEvent | Mapping[str, Any]],
        actor: str,
        *,
        expected_seq: int | None = None,
        idempotency_key: str | None = None,
        reset_ttl: bool = True,
        auto_checkpoint: bool = True,
        publish_update: bool = True,
    ) -> list[int]:
        """Append ``events`` as ``actor`` in one atomic step; returns their (contiguous) sequence numbers.

        All or nothing: a bad event anywhere (shape, size, a transition whose ``from`` is not the state reached
        by the events before it) raises and writes nothing. ``expected_seq`` is checked against the last seq
        before the batch; ``idempotency_key`` covers the whole batch (a retry returns the same seqs). At most
        ``MAX_BATCH_EVENTS`` events; an auto-checkpoint due inside the batch is written right after it."""
        self._check_open()
        started = time.perf_counter()
        check_id(session_id)
        check_id(actor, "agent id")
        flat = batch_parts(events, self.config.max_event_bytes)
        expected = check_expected_seq(expected_seq)
        keyed = idempotency_key is not None
        token = check_id(idempotency_key, "idempotency key") if keyed else self._retry_token()
        cfg = self.config
        keys = self._session_keys(session_id)
        args: list[str | int] = [
            session_id, actor, token, expected, 1 if reset_ttl else 0,
            cfg.checkpoint_interval if auto_checkpoint and cfg.enable_auto_checkpoint else 0,
            cfg.max_events_per_session, keys.channel if publish_update else "", self._failure_csv,
            self._failure_ttl_ms, cfg.failure_snapshot_events, cfg.index_refresh_ms,
            cfg.max_checkpoints_per_session, "", len(flat) // 4, "1" if keyed else "", *flat,
        ]  # fmt: skip
        ok = False
        try:
            result = await self.store.emit_batch(keys, args)
            ok = True
        except SessionNotFoundError:
            raise await self._missing(session_id) from None
        finally:
            if self._observers:
                self._observe("emit_events", started, ok)
        if result.duplicate and len(result.seqs) != len(flat) // 4:
            raise InvalidEventError(
                f"idempotency key {idempotency_key!r} was already used for a call of {len(result.seqs)} "
                f"event(s), not {len(flat) // 4}: seqs {result.seqs[0]}..{result.seqs[-1]}",
                seqs=result.seqs,
            )
        if result.index_due:
            await self._best_effort(self.store.touch_active(session_id, result.at_ms))
        for failure_id in result.failure_snapshot_ids:
            await self._best_effort(self.store.index_failure(session_id, failure_id))
        return result.seqs
