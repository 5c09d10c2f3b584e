"""Patterns read from the sessions' event logs: event types, workload per agent, handoffs, time to fix."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..models import Distribution, EventType, HandoffCount

_HANDOFF_TARGET = ("to_agent", "toAgent", "to", "target")


def distribution(values: Sequence[float]) -> Distribution:
    """Exact summary of ``values`` (nearest-rank percentiles)."""
    if not values:
        return Distribution()
    ordered = sorted(values)
    n = len(ordered)

    def rank(q: float) -> float:
        return round(ordered[max(1, math.ceil(q * n)) - 1], 6)

    return Distribution(
        count=n,
        min=round(ordered[0], 6),
        mean=round(sum(ordered) / n, 6),
        p50=rank(0.5),
        p95=rank(0.95),
        max=round(ordered[-1], 6),
    )


@dataclass
class EventLogFigures:
    """What the scanned event logs hold, accumulated session by session."""

    failure_states: frozenset[str]
    scanned: int = 0
    unreadable: int = 0
    """Entries skipped because a field could not be read (damaged data)."""
    types: Counter[str] = field(default_factory=Counter)
    agent_events: Counter[str] = field(default_factory=Counter)
    handoffs: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    switches: int = 0
    fix_seconds: list[float] = field(default_factory=list)

    def add_session(self, entries: Iterable[tuple[str, dict[str, str]]]) -> None:
        """Fold one session's retained log (XRANGE entries, oldest first) into the figures."""
        previous_actor: str | None = None
        state: str | None = None
        failing_since: int | None = None
        for _, fields in entries:
            try:
                etype, actor, ts = fields["t"], fields["a"], int(fields["ts"])
            except (KeyError, ValueError):
                self.unreadable += 1  # a damaged entry is skipped, not fatal to the statistics
                continue
            self.scanned += 1
            self.types[etype] += 1
            payload = fields.get("d") or ""
            if etype == EventType.START and "initial_state" in payload:
                state = _data(payload).get("initial_state", state)
            if etype in EventType.LIFECYCLE:
                continue
            self.agent_events[actor] += 1
            if previous_actor is not None and actor != previous_actor:
                self.switches += 1
            previous_actor = actor
            was_failing = state in self.failure_states
            if '"state_transition"' in payload:
                transition = _body(payload).get("state_transition")
                if isinstance(transition, dict) and isinstance(transition.get("to"), str):
                    state = transition["to"]
            fails = etype == EventType.BROKE or (state in self.failure_states and not was_failing)
            fixes = etype == EventType.FIXED or (was_failing and state not in self.failure_states)
            if failing_since is None and fails:
                failing_since = ts
            elif failing_since is not None and fixes:
                self.fix_seconds.append((ts - failing_since) / 1000)
                failing_since = None
            if etype == EventType.HANDOFF:
                data = _data(payload)
                target = next((data[key] for key in _HANDOFF_TARGET if isinstance(data.get(key), str)), None)
                self.handoffs[(actor, target)] += 1

    def top_handoffs(self, limit: int) -> list[HandoffCount]:
        """The most frequent (from, to) handoffs."""
        return [
            HandoffCount(from_agent=source, to_agent=target, count=count)
            for (source, target), count in self.handoffs.most_common(limit)
        ]


def _body(payload: str) -> dict[str, Any]:
    """The stored payload as a JSON object ({} when empty or unreadable)."""
    try:
        body = json.loads(payload) if payload else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _data(payload: str) -> dict[str, Any]:
    data = _body(payload).get("data")
    return data if isinstance(data, dict) else {}
