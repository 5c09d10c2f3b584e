"""Statistics and listings computed from stored data (indexes merged across shards, sessions read in batches)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .models import SessionStats
from .store import redis_boundary

if TYPE_CHECKING:
    from .manager import SessionManager

BATCH = 500


def _chunks(items: list[str], size: int = BATCH) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@redis_boundary
async def _live_active(manager: SessionManager, candidates: list[str]) -> list[str]:
    """Keep the candidates whose session exists and is not completed (order kept)."""
    live: list[str] = []
    for chunk in _chunks(candidates):
        async with manager.client.pipeline(transaction=False) as pipe:
            for sid in chunk:
                pipe.hget(manager.keys.session(sid).meta, "status")
            statuses = await pipe.execute()
        live.extend(sid for sid, status in zip(chunk, statuses, strict=True) if status == "active")
    return live


async def active_session_ids(manager: SessionManager, limit: int | None) -> list[str]:
    """Live active sessions, most recently active first."""
    keys = manager.keys.active_indexes()
    if limit is not None:
        page = await manager.store.read_index(keys, limit=limit * 2 + 10)
        live = await _live_active(manager, [sid for sid, _ in page])
        if len(live) >= limit or len(page) < limit * 2 + 10:
            return live[:limit]
    entries = await manager.store.read_index(keys)
    live = await _live_active(manager, [sid for sid, _ in entries])
    return live if limit is None else live[:limit]


@redis_boundary
async def sessions_of_agent(manager: SessionManager, agent_id: str) -> list[str]:
    """Sessions that ``agent_id`` is a member of right now, most recently joined first."""
    candidates = await manager.client.zrevrange(manager.keys.agent_sessions(agent_id), 0, -1)
    member: list[str] = []
    for chunk in _chunks(list(candidates)):
        async with manager.client.pipeline(transaction=False) as pipe:
            for sid in chunk:
                pipe.hexists(manager.keys.session(sid).agents, agent_id)
            found = await pipe.execute()
        member.extend(sid for sid, hit in zip(chunk, found, strict=True) if hit)
    return member


@redis_boundary
async def compute_stats(manager: SessionManager) -> SessionStats:
    """Walk the active index in batches and aggregate what the sessions hold."""
    entries = await manager.store.read_index(manager.keys.active_indexes())
    states: Counter[str] = Counter()
    agents: set[str] = set()
    sessions = events = in_grace = memberships = 0
    for chunk in _chunks([sid for sid, _ in entries]):
        async with manager.client.pipeline(transaction=False) as pipe:
            for sid in chunk:
                keys = manager.keys.session(sid)
                pipe.hmget(keys.meta, ["status", "state", "seq", "grace"])
                pipe.hkeys(keys.agents)
            replies = await pipe.execute()
        for meta, members in zip(replies[::2], replies[1::2], strict=True):
            status, state, seq, grace = meta
            if status != "active":
                continue
            sessions += 1
            events += int(seq)
            states[state] += 1
            in_grace += grace == "1"
            memberships += len(members)
            agents.update(members)
    async with manager.client.pipeline(transaction=False) as pipe:
        for key in manager.keys.failure_indexes():
            pipe.zcard(key)
        failure_counts = await pipe.execute()
    return SessionStats(
        active_sessions=sessions,
        total_events=events,
        average_events_per_session=events / sessions if sessions else 0.0,
        sessions_by_state=dict(states),
        sessions_in_grace=in_grace,
        distinct_agents=len(agents),
        average_agents_per_session=memberships / sessions if sessions else 0.0,
        failure_snapshots=sum(failure_counts),
        computed_at=datetime.now(UTC),
    )
