"""Shutdown events: logged, recorded and passed to the caller's callbacks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from .models import ShutdownEvent, ShutdownPhase
from .state import ShutdownState

log = logging.getLogger("huddle.shutdown")

ShutdownCallback = Callable[[ShutdownEvent], None]
"""Called with every phase change, progress report and error of a shutdown."""


class Reporter:
    """Turns progress and errors into ``ShutdownEvent``s for the log and the registered callbacks."""

    def __init__(self) -> None:
        self.callbacks: list[ShutdownCallback] = []

    def emit(
        self, kind: Literal["phase", "progress", "error"], phase: ShutdownPhase, message: str, **details: Any
    ) -> None:
        """Log the event and call every callback (a failing callback is logged, never raised)."""
        event = ShutdownEvent(kind=kind, phase=phase, message=message, at=datetime.now(UTC), details=details)
        log.log(logging.ERROR if kind == "error" else logging.INFO, "%s: %s", phase.value, message)
        for callback in self.callbacks:
            try:
                callback(event)
            except Exception:
                log.exception("shutdown event callback failed")

    def progress(self, state: ShutdownState, message: str, **details: Any) -> None:
        """A step of the current phase finished."""
        self.emit("progress", state.phase, message, **details)

    def error(self, state: ShutdownState, message: str) -> None:
        """Something failed: recorded in the status and reported."""
        state.errors.append(message)
        self.emit("error", state.phase, message)
