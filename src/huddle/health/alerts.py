"""AlertManager: turns check levels into alerts, once per transition, and calls the callbacks."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from .config import HealthConfig
from .report import Alert, Check, Level

log = logging.getLogger("huddle.health.alerts")

AlertCallback = Callable[[Alert], Awaitable[None] | None]
"""Called with every alert: a figure got worse, better, or healthy again (``alert.resolved``)."""


class AlertManager:
    """Remembers the last level of every check; a change of level is one alert, a repeat is none."""

    def __init__(self, config: HealthConfig, callbacks: Iterable[AlertCallback] = ()) -> None:
        self.config = config
        self._callbacks: list[AlertCallback] = list(callbacks)
        self._levels: dict[str, Level] = {}
        self._active: dict[str, Alert] = {}
        self.history_size = 100
        self.history: list[Alert] = []

    def add_callback(self, callback: AlertCallback) -> None:
        """Call ``callback(alert)`` (sync or async) on every future transition."""
        self._callbacks.append(callback)

    def evaluate(self, checks: Mapping[str, Check]) -> list[Alert]:
        """The transitions between the previous levels and these checks (updates the remembered levels)."""
        alerts: list[Alert] = []
        for key, check in checks.items():
            previous = self._levels.get(key, "healthy")
            self._levels[key] = check.level
            if check.level == previous:
                continue
            threshold = self.config.threshold(key)
            judged_level = check.level if check.level != "healthy" else previous
            limit = threshold.limit_for(judged_level) if threshold is not None else None
            if check.level == "healthy":
                message = f"{key} recovered (was {previous})"
            else:
                message = f"{key} is {check.level} (was {previous})" + (
                    f": {check.output}" if check.output else ""
                )
            alert = Alert(
                check=key,
                level=check.level,
                previous=previous,
                observed_value=check.observed_value,
                threshold=limit,
                message=message,
                time=check.time,
            )
            alerts.append(alert)
            if check.level == "healthy":
                self._active.pop(key, None)
            else:
                self._active[key] = alert
        if alerts:
            self.history = (self.history + alerts)[-self.history_size :]
        return alerts

    def active(self) -> list[Alert]:
        """Alerts whose figure is not healthy now, oldest first."""
        return sorted(self._active.values(), key=lambda alert: alert.time)

    async def dispatch(self, alerts: list[Alert], limit: float) -> None:
        """Call every callback with every alert; a failing or slow callback is logged, never fatal."""
        for alert in alerts:
            for callback in list(self._callbacks):
                try:
                    result = callback(alert)
                    if inspect.isawaitable(result):
                        await asyncio.wait_for(result, limit)
                except Exception:
                    log.exception("alert callback %r failed for %s", callback, alert.check)
