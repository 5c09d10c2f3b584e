"""The building blocks of component checks: a set of judged figures, and what counts as unreachable."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from redis.exceptions import RedisError

from ..core.store import REDIS_DOWN
from ..errors import HuddleError
from .config import HealthConfig
from .report import Check, ComponentHealth, Level, ietf_status, worst

UNREACHABLE = (HuddleError, RedisError, *REDIS_DOWN)
BATCH = 500
_CAMEL = re.compile(r"_([a-z0-9])")


def text_of(value: Any) -> str:
    """A reply value as text (bytes decoded)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def camel(name: str) -> str:
    """``sync_lag_seconds`` -> ``syncLagSeconds``."""
    return _CAMEL.sub(lambda m: m.group(1).upper(), name)


class CheckSet:
    """Builds one component's checks, applying the configured threshold of each figure."""

    def __init__(self, component: str, component_type: str, config: HealthConfig) -> None:
        self.name = component
        self.component_type = component_type
        self.config = config
        self.time = datetime.now(UTC)
        self.checks: dict[str, Check] = {}

    def add(
        self,
        measurement: str,
        value: float | int | str | bool | None,
        unit: str | None = None,
        *,
        level: Level = "healthy",
        output: str | None = None,
        judge: bool = True,
    ) -> Check:
        """Record a figure; its level is the worse of ``level`` and what its threshold says (if ``judge``)."""
        key = f"{self.name}:{measurement}"
        threshold = self.config.threshold(key) if judge else None
        if threshold is not None and isinstance(value, int | float) and not isinstance(value, bool):
            reached = threshold.level_of(float(value))
            if reached != "healthy":
                limit = threshold.limit_for(reached)
                side = ">=" if threshold.direction == "above" else "<="
                note = f"{value:g}{' ' + unit if unit else ''} {side} {reached} threshold {limit:g}"
                output = f"{output}; {note}" if output else note
                level = worst([level, reached])
        check = Check(
            component_id=self.name,
            component_type=self.component_type,
            observed_value=value,
            observed_unit=unit,
            status=ietf_status(level),
            level=level,
            time=self.time,
            output=output,
        )
        self.checks[key] = check
        return check

    def component(
        self, *, details: dict[str, Any] | None = None, output: str | None = None
    ) -> ComponentHealth:
        """The component, as bad as its worst check."""
        level = worst([check.level for check in self.checks.values()])
        problems = [
            check.output for check in self.checks.values() if check.level != "healthy" and check.output
        ]
        return ComponentHealth(
            name=self.name,
            level=level,
            output=output or ("; ".join(problems) if problems else None),
            checks=self.checks,
            details=details or {},
        )


class ComponentCheck(Protocol):
    """A component that can be checked."""

    name: str

    async def run(self) -> ComponentHealth:
        """Measure the component now."""
        ...


def persistence(info: Mapping[str, Any], save: str | None, checks: CheckSet) -> dict[str, Any]:
    """Judge the persistence mode in ``info`` (and the ``save`` setting when readable); add its check."""
    aof = str(info.get("aof_enabled", 0)) == "1"
    rdb = None if save is None else bool(save.strip())
    modes = [name for name, on in (("aof", aof), ("rdb", rdb)) if on]
    mode = "+".join(modes) if modes else ("none" if rdb is not None else "aof" if aof else "unknown")
    failures = [
        f"{field}={text_of(info.get(field))}"
        for field in ("rdb_last_bgsave_status", "aof_last_write_status", "aof_last_bgrewrite_status")
        if text_of(info.get(field, "ok")) != "ok"
    ]
    output = "; ".join(failures) if failures else None
    if mode == "none":
        output = "persistence is off: a server restart loses every session"
    checks.add("persistence", mode, level="warning" if failures else "healthy", output=output)
    return {
        "mode": mode,
        "aof_enabled": aof,
        "rdb_changes_since_last_save": int(info.get("rdb_changes_since_last_save", 0)),
        "rdb_last_bgsave_status": text_of(info.get("rdb_last_bgsave_status", "")),
        "aof_last_write_status": text_of(info.get("aof_last_write_status", "")),
    }
