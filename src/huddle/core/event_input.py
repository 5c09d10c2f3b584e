"""Validation of submitted events before any script runs: shape, lifecycle types, payload size, batch limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from ..errors import InvalidEventError
from ..models import EventType, SessionEvent

MAX_BATCH_EVENTS = 1000
"""Most events one ``emit_events`` call may append (one script call holds the server for the whole batch)."""

_LIFECYCLE = EventType.LIFECYCLE
_VALIDATE = SessionEvent.__pydantic_validator__.validate_python


def parse_event(event: SessionEvent | Mapping[str, Any], where: str = "event") -> SessionEvent:
    """A ``SessionEvent`` from a model or a mapping; ``InvalidEventError`` naming the first bad field."""
    if isinstance(event, SessionEvent):
        return event
    try:
        # What model_validate runs, without its wrapper: this is done once per appended event.
        return _VALIDATE(event)  # type: ignore[no-any-return]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        place = (f"{where}.{field}" if field else where) if where != "event" else (field or where)
        raise InvalidEventError(
            f"invalid event: {place}: {first['msg']}"
            + (f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""),
            errors=[f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()],
        ) from None


def event_parts(
    event: SessionEvent | Mapping[str, Any], max_bytes: int, where: str = "event"
) -> tuple[str, str, str, str]:
    """(type, payload JSON, transition from or '', transition to or '') of a valid, appendable event."""
    parsed = parse_event(event, where)
    etype = parsed.type
    prefix = "" if where == "event" else f"{where}: "
    if etype in _LIFECYCLE:
        raise InvalidEventError(
            f"{prefix}event type {etype!r} is written by huddle itself; use the method for it"
        )
    payload = parsed.payload_json()
    # len() counts characters; only a payload that could exceed the limit in UTF-8 is encoded to count bytes.
    size = len(payload) if len(payload) * 4 <= max_bytes else len(payload.encode())
    if size > max_bytes:
        raise InvalidEventError(f"{prefix}event payload is {size} bytes; the limit is {max_bytes}")
    transition = parsed.state_transition
    if transition is None:
        return etype, payload, "", ""
    return etype, payload, transition.from_state, transition.to


def batch_parts(events: Sequence[SessionEvent | Mapping[str, Any]], max_bytes: int) -> list[str]:
    """The flat script arguments of a batch (4 per event), every event validated first."""
    if isinstance(events, str | bytes | Mapping) or not isinstance(events, Sequence):
        raise InvalidEventError(f"events must be a list of events, got {type(events).__name__}")
    count = len(events)
    if not 1 <= count <= MAX_BATCH_EVENTS:
        raise InvalidEventError(f"a batch holds 1..{MAX_BATCH_EVENTS} events, got {count}")
    flat: list[str] = []
    for index, event in enumerate(events):
        flat.extend(event_parts(event, max_bytes, f"events[{index}]"))
    return flat


def check_expected_seq(expected_seq: int | None) -> str:
    """The script argument for ``expected_seq`` ('' = any)."""
    if expected_seq is None:
        return ""
    if not isinstance(expected_seq, int) or isinstance(expected_seq, bool) or expected_seq < 0:
        raise InvalidEventError(f"expected_seq must be a non-negative integer, got {expected_seq!r}")
    return str(expected_seq)
