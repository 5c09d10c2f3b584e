"""Stored session data (stream entries, meta and agents hashes) as models; unreadable data is a typed error.

The parsers are on the path of every event read: the success path has no extra work (a ``try`` costs nothing),
and only after a failure is the data looked at again to name the field that broke it."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from ..errors import CorruptSessionDataError
from ..models import AgentInfo, Checkpoint, Event, FailureSnapshot, SessionDocument, ms_to_datetime

PARSE_ERRORS = (KeyError, ValueError, TypeError, AttributeError, OverflowError, IndexError, ValidationError)
"""What reading garbage raises (json's JSONDecodeError and pydantic's ValidationError are ValueErrors)."""

_EVENT_FIELDS = {"type": "t", "actor": "a", "timestamp": "ts", "seq": "id"}


def corrupt(
    session_id: str, key: str, field: str, exc: BaseException | None = None
) -> CorruptSessionDataError:
    """The typed error for an unreadable stored value: names the session, the Redis key and the field."""
    why = f" ({type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''})" if exc else ""
    return CorruptSessionDataError(
        f"session {session_id!r}: stored field {field!r} of {key!r} cannot be read{why}; the data is corrupt",
        session_id=session_id, key=key, field=field,
    )  # fmt: skip


def _fails(convert: Callable[[Any], Any], value: Any) -> bool:
    try:
        convert(value)
    except PARSE_ERRORS:
        return True
    return False


def _json_object(text: str) -> dict[str, Any]:
    body = json.loads(text)
    if not isinstance(body, dict):
        raise TypeError(f"a JSON object is expected, not {type(body).__name__}")
    return body


def _validation_field(exc: BaseException, names: dict[str, str], default: str) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        first = str(exc.errors()[0]["loc"][0]) if exc.errors()[0]["loc"] else default
        return names.get(first, first)
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return default


def parse_event(session_id: str, entry_id: str, fields: dict[str, str], key: str = "events") -> Event:
    """One stream entry as an ``Event``."""
    try:
        body: dict[str, Any] = json.loads(fields.get("d") or "{}")
        body.update(
            session_id=session_id,
            seq=int(entry_id[2:]),
            type=fields["t"],
            actor=fields["a"],
            timestamp=int(fields["ts"]),
        )
        return Event.model_validate(body)
    except PARSE_ERRORS as exc:
        if _fails(_json_object, fields.get("d") or "{}"):
            field = "d"
        elif _fails(int, fields.get("ts")):
            field = "ts"
        else:
            field = _validation_field(exc, _EVENT_FIELDS, "d")
        raise corrupt(session_id, key, f"{entry_id}.{field}", exc) from None


def _agents_list(csv: str) -> list[str]:
    return [agent for agent in csv.split(",") if agent]


def _agent_info(agent: str, value: str) -> AgentInfo:
    joined, _, seen = value.partition(":")
    return AgentInfo(
        agent_id=agent, joined_at=ms_to_datetime(joined), last_seen=ms_to_datetime(seen or joined)
    )


def _status(value: str) -> str:
    if value not in ("active", "completed"):
        raise ValueError(f"status must be active or completed, not {value[:20]!r}")
    return value


_META_CHECKS: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("status", _status),
    ("state", str.strip),
    ("creator", str.strip),
    ("created", ms_to_datetime),
    ("updated", ms_to_datetime),
    ("seq", int),
    ("ver", int),
    ("ttl", int),
)
_META_OPTIONAL: tuple[tuple[str, Callable[[Any], Any]], ...] = (
    ("first", int),
    ("cps", int),
    ("md", _json_object),
    ("broken", lambda v: v == "" or ms_to_datetime(v)),
)
_DOCUMENT_FIELDS = {"created_at": "created", "updated_at": "updated", "last_seq": "seq", "first_seq": "first",
                    "version": "ver", "metadata": "md", "last_checkpoint_seq": "cps", "broken_since": "broken",
                    "last_checkpoint_id": "cp"}  # fmt: skip


def parse_session(
    session_id: str, meta: dict[str, str], agents: dict[str, str], pttl: int, keys: tuple[str, str] = ("", "")
) -> SessionDocument:
    """Build a ``SessionDocument`` from the raw meta and agents hashes (``keys``: their names, for errors)."""
    try:
        return SessionDocument(
            session_id=session_id,
            status=meta["status"],
            state=meta["state"],
            creator=meta["creator"],
            created_at=ms_to_datetime(meta["created"]),
            updated_at=ms_to_datetime(meta["updated"]),
            last_seq=int(meta["seq"]),
            first_seq=int(meta.get("first", "1")),
            version=int(meta["ver"]),
            ttl=int(meta["ttl"]),
            expires_in=pttl / 1000 if pttl > 0 else None,
            metadata=json.loads(meta.get("md") or "{}"),
            agents={agent: _agent_info(agent, value) for agent, value in agents.items()},
            last_checkpoint_id=meta.get("cp") or None,
            last_checkpoint_seq=int(meta.get("cps", "0")),
            broken_since=ms_to_datetime(meta["broken"]) if meta.get("broken") else None,
            in_grace=meta.get("grace") == "1",
        )
    except PARSE_ERRORS as exc:
        raise _session_corruption(session_id, meta, agents, keys, exc) from None


def _session_corruption(
    session_id: str, meta: dict[str, str], agents: dict[str, str], keys: tuple[str, str], exc: BaseException
) -> CorruptSessionDataError:
    """Which stored field made ``parse_session`` fail (the slow path: only after a failure)."""
    for name, check in _META_CHECKS:
        if name not in meta or _fails(check, meta[name]):
            return corrupt(session_id, keys[0], name, exc)
    for name, check in _META_OPTIONAL:
        if meta.get(name) and _fails(check, meta[name]):
            return corrupt(session_id, keys[0], name, exc)
    for agent, value in agents.items():
        if _fails(functools.partial(_agent_info, agent), value):
            return corrupt(session_id, keys[1], agent, exc)
    return corrupt(session_id, keys[0], _validation_field(exc, _DOCUMENT_FIELDS, "meta"), exc)


def parse_checkpoint(
    session_id: str, entry_id: str, fields: dict[str, str], key: str = "checkpoints"
) -> Checkpoint:
    """One checkpoints-stream entry as a ``Checkpoint``."""
    try:
        seq = int(entry_id[2:])
        failure = fields.get("failure") or ""
        return Checkpoint(
            checkpoint_id=f"cp-{seq}",
            session_id=session_id,
            seq=seq,
            state=fields["state"],
            status=fields["status"],
            agents=_agents_list(fields.get("agents", "")),
            metadata=json.loads(fields.get("metadata") or "{}"),
            reason=fields.get("reason", ""),
            created_at=ms_to_datetime(fields["ts"]),
            failure_snapshot_id=failure or None,
        )
    except PARSE_ERRORS as exc:
        if _fails(_json_object, fields.get("metadata") or "{}"):
            field = "metadata"
        elif _fails(ms_to_datetime, fields.get("ts")):
            field = "ts"
        else:
            field = _validation_field(exc, {"created_at": "ts", "seq": "id"}, "entry")
        raise corrupt(session_id, key, f"{entry_id}.{field}", exc) from None


def parse_failure(
    session_id: str, entry_id: str, fields: dict[str, str], key: str = "failures"
) -> FailureSnapshot:
    """One failures-stream entry as a ``FailureSnapshot`` (its events oldest first)."""
    try:
        raw_events = json.loads(fields.get("events") or "[]")
        events = []
        if isinstance(raw_events, list):
            for event_id, flat in reversed(raw_events):
                pairs = dict(zip(flat[::2], flat[1::2], strict=True))
                events.append(parse_event(session_id, event_id, pairs, key))
        return FailureSnapshot(
            snapshot_id=entry_id,
            session_id=session_id,
            seq=int(fields["seq"]),
            created_at=ms_to_datetime(fields["ts"]),
            state=fields["state"],
            status=fields["status"],
            agents=_agents_list(fields.get("agents", "")),
            metadata=json.loads(fields.get("metadata") or "{}"),
            events=events,
        )
    except CorruptSessionDataError as exc:
        raise corrupt(session_id, key, f"{entry_id}.events", exc) from None
    except PARSE_ERRORS as exc:
        field = _validation_field(exc, {"created_at": "ts"}, "events")
        raise corrupt(session_id, key, f"{entry_id}.{field}", exc) from None


def parse_int(session_id: str, key: str, field: str, value: str | None, default: int) -> int:
    """A stored integer field (``default`` when absent)."""
    if value is None or value == "":
        return default
    try:
        return int(value)
    except PARSE_ERRORS as exc:
        raise corrupt(session_id, key, field, exc) from None
