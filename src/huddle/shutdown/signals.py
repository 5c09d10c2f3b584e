"""Installing and removing the shutdown's signal handlers on the running event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterable

log = logging.getLogger("huddle.shutdown")


class SignalHandlers:
    """Loop signal handlers that call ``callback(signal)``; removing them restores the default behaviour."""

    def __init__(self, callback: Callable[[signal.Signals], None]) -> None:
        self._callback = callback
        self._loop: asyncio.AbstractEventLoop | None = None
        self._installed: list[signal.Signals] = []

    @property
    def names(self) -> list[str]:
        """Names of the signals handled right now."""
        return [sig.name for sig in self._installed]

    def install(self, loop: asyncio.AbstractEventLoop, signals: Iterable[signal.Signals]) -> None:
        """Handle ``signals`` on ``loop`` (a signal that cannot be handled here is logged and skipped)."""
        self.remove()
        self._loop = loop
        for sig in signals:
            try:
                loop.add_signal_handler(sig, self._callback, sig)
            except (NotImplementedError, RuntimeError, ValueError) as exc:  # not the main thread, or Windows
                log.warning("cannot handle %s here (%s); call shutdown() yourself", sig.name, exc)
                continue
            self._installed.append(sig)

    def remove(self) -> None:
        """Remove every handler this object installed (idempotent)."""
        installed, self._installed = self._installed, []
        if self._loop is None or self._loop.is_closed():
            return
        for sig in installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.remove_signal_handler(sig)
