"""Checking a recording's meta hash (stored, or the header of an import) before anything parses it."""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import ReplayIntegrityError
from ..ids import check_id

NUMERIC_FIELDS = ("started", "ended", "raw", "stored", "frames", "segments", "first_seq", "last_seq",
                  "first_at", "last_at", "imported")  # fmt: skip
"""Fields that hold a non-negative integer when present (``ended`` etc. may be empty while recording)."""
_MAY_BE_EMPTY = frozenset({"ended", "first_at", "last_at"})
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_MAX_DIGITS = 19  # fits a signed 64-bit integer: milliseconds and counts never get near it


def meta_problem(meta: dict[str, str]) -> str | None:
    """What is wrong with ``meta`` (naming the field), or None if every field parses."""
    for name in ("sid", "started", "init"):
        if not meta.get(name):
            return f"the recording's meta lacks {name!r}"
    try:
        check_id(meta["sid"])
    except ValueError:
        return "the recording's meta field 'sid' is not a session id"
    for name in NUMERIC_FIELDS:
        value = meta.get(name)
        if value is None or (value == "" and name in _MAY_BE_EMPTY):
            continue
        if not (value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS):
            return f"the recording's meta field {name!r} is not a count: {value[:40]!r}"
    if meta.get("head") and not _HEX32.match(meta["head"]):
        return "the recording's meta field 'head' is not a chain hash"
    if meta.get("status", "recording") not in ("recording", "complete"):
        return f"the recording's meta field 'status' is not recording/complete: {meta['status'][:40]!r}"
    for name in ("comp", "delta"):
        if meta.get(name, "0") not in ("0", "1", ""):
            return f"the recording's meta field {name!r} is not 0 or 1"
    if _json_object(meta["init"], ("st", "s", "a", "cp", "md")) is None:
        return "the recording's meta field 'init' is not an initial-state snapshot"
    init = json.loads(meta["init"])
    if not (isinstance(init["a"], list) and all(isinstance(a, str) for a in init["a"])):
        return "the recording's meta field 'init' lists agents that are not ids"
    if (
        not all(isinstance(init[k], str) for k in ("st", "s"))
        or not isinstance(init["cp"], str | None)
        or not isinstance(init["md"], dict)
    ):
        return "the recording's meta field 'init' holds values of the wrong type"
    if not isinstance(init.get("seq", 0), int):
        return "the recording's meta field 'init' has a seq that is not a number"
    if meta.get("md") and _json_object(meta["md"], ()) is None:
        return "the recording's meta field 'md' is not a JSON object"
    return None


def check_meta(meta: dict[str, str]) -> None:
    """Raise ``ReplayIntegrityError`` naming the first field of ``meta`` that cannot be parsed."""
    problem = meta_problem(meta)
    if problem is not None:
        raise ReplayIntegrityError(problem, reason=problem)


def _json_object(text: str, required: tuple[str, ...]) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or any(name not in value for name in required):
        return None
    return value


def index_problem(index: list[Any]) -> str | None:
    """What is wrong with the seek index entries (``i``/``q``/``t`` integers, ``p`` a chain hash), or None."""
    for position, entry in enumerate(index):
        if not isinstance(entry, dict):
            return f"seek entry {position} is not an object"
        if not all(type(entry.get(k)) is int for k in ("i", "q", "t")):
            return f"seek entry {position} lacks integer i/q/t"
        if not isinstance(entry.get("p"), str) or not _HEX32.match(entry["p"]):
            return f"seek entry {position} has no chain hash"
    return None
