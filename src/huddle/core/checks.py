"""Argument checks of the public ``SessionManager`` methods: a typed ``HuddleError`` before Redis is touched.

Ids and names are checked by ``huddle.ids`` (``check_id``, ``check_name``); numbers, checkpoint ids and failure
snapshot ids here. ``bool`` is refused where an integer is asked for (``True`` is an ``int`` to Python, and
would reach Redis as ``1`` or fail inside redis-py)."""

from __future__ import annotations

import re
from typing import Any

from ..errors import InvalidEventError, InvalidIdentifierError

MAX_SEQ = 2**63 - 1
"""Largest seq / count a caller may pass (Redis stream ids and COUNT are 64-bit)."""

_CHECKPOINT_ID = re.compile(r"cp-([0-9]{1,18})")
_STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(value: object, what: str, minimum: int = 0, maximum: int = MAX_SEQ) -> int:
    """``value`` if it is an ``int`` (not a bool) in ``minimum..maximum``, else ``InvalidEventError``."""
    if not isinstance(value, int) or value.__class__ is not int or not minimum <= value <= maximum:
        raise InvalidEventError(
            f"{what} must be an integer {minimum}..{maximum}, got {_shown(value)}", argument=what
        )
    return value


def check_optional_int(value: object, what: str, minimum: int = 0, maximum: int = MAX_SEQ) -> int | None:
    """``check_int``, with None allowed (meaning: no bound)."""
    return None if value is None else check_int(value, what, minimum, maximum)


def check_callable(value: object, what: str) -> Any:
    """``value`` if it can be called, else ``InvalidEventError``."""
    if not callable(value):
        raise InvalidEventError(f"{what} must be callable, got {_shown(value)}", argument=what)
    return value


def checkpoint_seq(checkpoint_id: object) -> int | None:
    """The seq of a checkpoint id ``cp-<seq>``; None for a string of another shape (no such checkpoint).

    A non-string raises ``InvalidIdentifierError``."""
    if not isinstance(checkpoint_id, str):
        raise InvalidIdentifierError(
            f"invalid checkpoint id {_shown(checkpoint_id)}: a string cp-<seq> is expected",
            value=_shown(checkpoint_id), kind="checkpoint id",
        )  # fmt: skip
    match = _CHECKPOINT_ID.fullmatch(checkpoint_id)
    return int(match.group(1)) if match is not None else None


def check_snapshot_id(snapshot_id: object) -> str:
    """``snapshot_id`` if it is a failure snapshot id (a stream entry id ``<ms>-<n>``), else
    ``InvalidIdentifierError``."""
    match = _STREAM_ID.fullmatch(snapshot_id) if isinstance(snapshot_id, str) else None
    if match is None or int(match.group(1)) >= 2**64 or int(match.group(2)) >= 2**64:
        raise InvalidIdentifierError(
            f"invalid failure snapshot id {_shown(snapshot_id)}: <milliseconds>-<counter> is expected",
            value=_shown(snapshot_id), kind="failure snapshot id",
        )  # fmt: skip
    return snapshot_id  # type: ignore[return-value]
