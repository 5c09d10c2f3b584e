"""Identifier rules shared by sessions, agents, event types and states."""

from __future__ import annotations

import re
import uuid

from .errors import InvalidIdentifierError

ID_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


def check_id(value: object, what: str = "session id") -> str:
    """Return ``value`` if it is a valid id, else raise ``InvalidIdentifierError``."""
    if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
        raise InvalidIdentifierError(
            f"invalid {what} {value!r}: use 1-128 characters from A-Z a-z 0-9 _ . : - (no braces or spaces)",
            value=repr(value),
            kind=what,
        )
    return value


def check_name(value: object, what: str) -> str:
    """Validate a short name (event type, state): 1-64 characters of ``[A-Za-z0-9_.:-]``."""
    if not isinstance(value, str) or NAME_PATTERN.fullmatch(value) is None:
        raise InvalidIdentifierError(
            f"invalid {what} {value!r}: use 1-64 characters from A-Z a-z 0-9 _ . : -",
            value=repr(value),
            kind=what,
        )
    return value


def new_session_id() -> str:
    """A fresh random session id."""
    return f"s-{uuid.uuid4().hex}"
