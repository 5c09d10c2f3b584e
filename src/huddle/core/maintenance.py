"""Index repair and the manager's own health check."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..backend.connection import primary_infos
from ..errors import HuddleError
from ..models import HealthStatus, MaintenanceReport
from .store import REDIS_DOWN, redis_boundary

if TYPE_CHECKING:
    from .store import SessionStore

BATCH = 500


@redis_boundary
async def _clean_active(store: SessionStore, key: str) -> tuple[int, int]:
    """Drop entries of sessions that expired or completed from one active-index shard."""
    client, scanned, removed = store.client, 0, 0
    cursor = 0
    while True:
        cursor, entries = await client.zscan(key, cursor, count=BATCH)
        members = [member for member, _ in entries]
        scanned += len(members)
        if members:
            async with client.pipeline(transaction=False) as pipe:
                for sid in members:
                    pipe.hget(store.keys.session(sid).meta, "status")
                statuses = await pipe.execute()
            stale = [sid for sid, status in zip(members, statuses, strict=True) if status != "active"]
            if stale:
                removed += await client.zrem(key, *stale)
        if cursor == 0:
            return scanned, removed


@redis_boundary
async def _clean_failures(store: SessionStore, key: str, snapshot_ttl: int) -> tuple[int, int]:
    """Drop failure-index entries whose snapshot expired (its stream is gone or the entry was trimmed)."""
    client, scanned, removed = store.client, 0, 0
    horizon = int(time.time() * 1000) - snapshot_ttl * 1000
    removed += await client.zremrangebyscore(key, "-inf", horizon)
    cursor = 0
    while True:
        cursor, entries = await client.zscan(key, cursor, count=BATCH)
        members = [member for member, _ in entries]
        scanned += len(members)
        if members:
            async with client.pipeline(transaction=False) as pipe:
                for member in members:
                    sid, _, snapshot_id = member.rpartition("/")
                    pipe.xrange(store.keys.session(sid).failures, snapshot_id, snapshot_id)
                found = await pipe.execute()
            stale = [member for member, hit in zip(members, found, strict=True) if not hit]
            if stale:
                removed += await client.zrem(key, *stale)
        if cursor == 0:
            return scanned, removed


@redis_boundary
async def _clean_agents(store: SessionStore) -> tuple[int, int]:
    """Drop agent-index entries for sessions the agent is no longer in (maintenance-only SCAN)."""
    client, scanned, removed = store.client, 0, 0
    async for key in client.scan_iter(match=store.keys.agent_pattern(), count=BATCH, _type="zset"):
        agent = key[key.index("{") + 1 : key.rindex("}")]
        members = await client.zrange(key, 0, -1)
        scanned += len(members)
        if not members:
            continue
        async with client.pipeline(transaction=False) as pipe:
            for sid in members:
                pipe.hexists(store.keys.session(sid).agents, agent)
            found = await pipe.execute()
        stale = [sid for sid, hit in zip(members, found, strict=True) if not hit]
        if stale:
            removed += await client.zrem(key, *stale)
    return scanned, removed


async def perform_maintenance(store: SessionStore, *, failure_snapshot_ttl: int) -> MaintenanceReport:
    """Repair the global indexes: they are updated after each session script, so they can lag or go stale."""
    started = time.perf_counter()
    scanned = removed_active = removed_failures = 0
    for key in store.keys.active_indexes():
        seen, gone = await _clean_active(store, key)
        scanned, removed_active = scanned + seen, removed_active + gone
    for key in store.keys.failure_indexes():
        seen, gone = await _clean_failures(store, key, failure_snapshot_ttl)
        scanned, removed_failures = scanned + seen, removed_failures + gone
    seen, removed_agents = await _clean_agents(store)
    return MaintenanceReport(
        scanned_index_entries=scanned + seen,
        removed_active_entries=removed_active,
        removed_failure_entries=removed_failures,
        removed_agent_entries=removed_agents,
        duration_ms=(time.perf_counter() - started) * 1000,
    )


async def health_check(store: SessionStore) -> HealthStatus:
    """Measure Redis from this manager's point of view; never raises for an unreachable Redis."""
    problems: list[str] = []
    now = datetime.now(UTC)
    try:
        started = time.perf_counter()
        await store.client.ping()
        latency_ms = (time.perf_counter() - started) * 1000
        infos = await primary_infos(store.client)  # every primary on a cluster
    except (HuddleError, *REDIS_DOWN) as exc:
        return _down(exc, now)
    answered = {node: info for node, info in infos.items() if not isinstance(info, BaseException)}
    active: int | None = None
    try:
        scripts_loaded = await store.scripts_loaded()
        async with store.client.pipeline(transaction=False) as pipe:
            for key in store.keys.active_indexes():
                pipe.zcard(key)
            active = sum(await pipe.execute())
    except (HuddleError, *REDIS_DOWN) as exc:
        if len(answered) == len(infos):
            return _down(exc, now)
        scripts_loaded = False  # some cluster primaries are down (named below): what they hold is unknown
        problems.append(f"scripts and sessions not counted while a primary is down: {exc}")
    status = "healthy"
    for node, error in infos.items():
        if isinstance(error, BaseException):
            status = "critical"  # the slots of that primary cannot be served
            problems.append(f"redis node {node} unreachable: {error}")
    for node, info in answered.items():
        used, maxmemory = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        where = f"redis node {node}" if node else "redis"
        if maxmemory and used / maxmemory >= 0.95:
            status = "critical"
            problems.append(f"{where} memory {used}/{maxmemory} bytes (>= 95%)")
        elif maxmemory and used / maxmemory >= 0.8:
            status = "warning" if status == "healthy" else status
            problems.append(f"{where} memory {used}/{maxmemory} bytes (>= 80%)")
    versions = [str(info.get("redis_version")) for info in answered.values()]
    if latency_ms > 100 and status == "healthy":
        status = "warning"
        problems.append(f"redis round trip {latency_ms:.1f} ms")
    return HealthStatus(
        status=status,
        redis_reachable=True,
        latency_ms=latency_ms,
        redis_version=min(versions, key=_version_key),
        used_memory_bytes=sum(int(info.get("used_memory", 0)) for info in answered.values()),
        scripts_loaded=scripts_loaded,
        active_sessions=active,
        problems=problems,
        checked_at=now,
    )


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def _down(exc: BaseException, now: datetime) -> HealthStatus:
    return HealthStatus(
        status="down", redis_reachable=False, latency_ms=None, redis_version=None, used_memory_bytes=None,
        scripts_loaded=False, active_sessions=None, problems=[f"redis unreachable: {exc}"], checked_at=now,
    )  # fmt: skip
