"""Statistics and listings computed from stored data (indexes merged across shards, sessions read in batches)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import combinations
from typing import TYPE_CHECKING

from ..models import AgentPair, AgentWorkload, SessionStats
from .analytics_events import EventLogFigures, distribution
from .store import redis_boundary

if TYPE_CHECKING:
    from .store import SessionStore

log = logging.getLogger("huddle.core.analytics")

BATCH = 500
LOG_BATCH = 50
"""Sessions whose whole event log is read in one pipeline (each log holds up to max_events_per_session)."""
TOP = 20
PAIR_MEMBERS = 64


def _chunks(items: list[str], size: int = BATCH) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@redis_boundary
async def _live_active(store: SessionStore, candidates: list[str]) -> list[str]:
    """Keep the candidates whose session exists and is not completed (order kept)."""
    live: list[str] = []
    for chunk in _chunks(candidates):
        async with store.client.pipeline(transaction=False) as pipe:
            for sid in chunk:
                pipe.hget(store.keys.session(sid).meta, "status")
            statuses = await pipe.execute(raise_on_error=False)  # a damaged session is not live
        live.extend(sid for sid, status in zip(chunk, statuses, strict=True) if status == "active")
    return live


async def active_session_ids(store: SessionStore, limit: int | None) -> list[str]:
    """Live active sessions, most recently active first."""
    keys = store.keys.active_indexes()
    if limit is not None:
        page = await store.read_index(keys, limit=limit * 2 + 10)
        live = await _live_active(store, [sid for sid, _ in page])
        if len(live) >= limit or len(page) < limit * 2 + 10:
            return live[:limit]
    entries = await store.read_index(keys)
    live = await _live_active(store, [sid for sid, _ in entries])
    return live if limit is None else live[:limit]


@redis_boundary
async def sessions_of_agent(store: SessionStore, agent_id: str) -> list[str]:
    """Sessions that ``agent_id`` is a member of right now, most recently joined first."""
    candidates = await store.client.zrevrange(store.keys.agent_sessions(agent_id), 0, -1)
    member: list[str] = []
    for chunk in _chunks(list(candidates)):
        async with store.client.pipeline(transaction=False) as pipe:
            for sid in chunk:
                pipe.hexists(store.keys.session(sid).agents, agent_id)
            found = await pipe.execute(raise_on_error=False)  # a damaged session is skipped
        member.extend(sid for sid, hit in zip(chunk, found, strict=True) if hit is True or hit == 1)
    return member


@dataclass
class _SessionFigures:
    """Per-session figures of the live sessions, folded in batch by batch."""

    now_ms: int
    sessions: int = 0
    events: int = 0
    in_grace: int = 0
    memberships: int = 0
    broken: int = 0
    created_hour: int = 0
    created_day: int = 0
    states: Counter[str] = field(default_factory=Counter)
    agent_sessions: Counter[str] = field(default_factory=Counter)
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)
    ages: list[float] = field(default_factory=list)
    spans: list[float] = field(default_factory=list)
    event_counts: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)

    def add(self, meta: list[str | None], members: list[str]) -> None:
        """Fold one session in; raises ValueError (nothing folded) if a stored number is unreadable."""
        _, state, seq, grace, created, updated, broken = meta
        events = int(seq or 0)
        created_ms, updated_ms = int(created or 0), int(updated or created or 0)
        self.sessions += 1
        self.events += events
        self.states[str(state)] += 1
        self.in_grace += grace == "1"
        self.broken += bool(broken)
        self.memberships += len(members)
        self.agent_sessions.update(members)
        # Pairs of a very large session would dominate the cost quadratically; 64 members cover real teams.
        self.pairs.update(combinations(sorted(members)[:PAIR_MEMBERS], 2))
        age = (self.now_ms - created_ms) / 1000
        self.created_hour += age <= 3600
        self.created_day += age <= 86400
        self.ages.append(age)
        span = (updated_ms - created_ms) / 1000
        self.spans.append(span)
        self.event_counts.append(events)
        if span >= 1:
            self.rates.append(events / (span / 60))


@redis_boundary
async def _server_ms(store: SessionStore) -> int:
    seconds, micros = await store.client.time()
    return int(seconds) * 1000 + int(micros) // 1000


@redis_boundary
async def _scan_logs(store: SessionStore, sids: list[str], logs: EventLogFigures) -> None:
    for chunk in _chunks(sids, LOG_BATCH):
        async with store.client.pipeline(transaction=False) as pipe:
            for sid in chunk:
                pipe.xrange(store.keys.session(sid).events, "-", "+")
            replies = await pipe.execute(raise_on_error=False)
        for sid, entries in zip(chunk, replies, strict=True):
            if isinstance(entries, Exception):
                log.warning("stats: the event log of session %s is unreadable (%s); skipped", sid, entries)
            else:
                logs.add_session(entries)


@redis_boundary
async def compute_stats(
    store: SessionStore, *, failure_states: Iterable[str], scan_events: bool = True
) -> SessionStats:
    """Walk the active index in batches and aggregate what the sessions (and, if asked, their logs) hold."""
    entries = await store.read_index(store.keys.active_indexes())
    figures = _SessionFigures(now_ms=await _server_ms(store))
    logs = EventLogFigures(failure_states=frozenset(failure_states))
    for chunk in _chunks([sid for sid, _ in entries]):
        async with store.client.pipeline(transaction=False) as pipe:
            for sid in chunk:
                keys = store.keys.session(sid)
                pipe.hmget(keys.meta, ["status", "state", "seq", "grace", "created", "updated", "broken"])
                pipe.hkeys(keys.agents)
            replies = await pipe.execute(raise_on_error=False)
        live: list[str] = []
        for sid, meta, members in zip(chunk, replies[::2], replies[1::2], strict=True):
            # one damaged session must not take the statistics of all the others down: it is skipped (logged)
            if isinstance(meta, Exception) or isinstance(members, Exception):
                log.warning(
                    "stats: session %s is unreadable (%s); skipped",
                    sid,
                    meta if isinstance(meta, Exception) else members,
                )
                continue
            if meta[0] != "active":
                continue
            try:
                figures.add(meta, members)
            except ValueError as exc:
                log.warning("stats: session %s holds an unreadable number (%s); skipped", sid, exc)
                continue
            live.append(sid)
        if scan_events and live:
            await _scan_logs(store, live, logs)
    async with store.client.pipeline(transaction=False) as pipe:
        for key in store.keys.failure_indexes():
            pipe.zcard(key)
        failure_counts = await pipe.execute()
    sessions = figures.sessions
    workload = sorted(
        set(figures.agent_sessions) | set(logs.agent_events),
        key=lambda agent: (-logs.agent_events[agent], -figures.agent_sessions[agent], agent),
    )
    return SessionStats(
        active_sessions=sessions,
        total_events=figures.events,
        average_events_per_session=figures.events / sessions if sessions else 0.0,
        sessions_by_state=dict(figures.states),
        sessions_in_grace=figures.in_grace,
        distinct_agents=len(figures.agent_sessions),
        average_agents_per_session=figures.memberships / sessions if sessions else 0.0,
        failure_snapshots=sum(failure_counts),
        computed_at=datetime.now(UTC),
        sessions_created_last_hour=figures.created_hour,
        sessions_created_last_day=figures.created_day,
        creation_rate_per_hour=figures.created_day / 24,
        session_age_seconds=distribution(figures.ages),
        session_active_seconds=distribution(figures.spans),
        events_per_session=distribution(figures.event_counts),
        events_per_minute=distribution(figures.rates),
        broken_sessions=figures.broken,
        sessions_per_agent=distribution(list(figures.agent_sessions.values())),
        agent_workload=[
            AgentWorkload(
                agent_id=agent, sessions=figures.agent_sessions[agent], events=logs.agent_events[agent]
            )
            for agent in workload[:TOP]
        ],
        collaboration_pairs=[
            AgentPair(agents=pair, shared_sessions=count) for pair, count in figures.pairs.most_common(TOP)
        ],
        events_scanned=logs.scanned,
        event_types=dict(logs.types.most_common()),
        events_per_agent=distribution(list(logs.agent_events.values())),
        actor_switches=logs.switches,
        handoff_count=sum(logs.handoffs.values()),
        handoffs=logs.top_handoffs(TOP),
        time_to_fix_seconds=distribution(logs.fix_seconds),
    )
