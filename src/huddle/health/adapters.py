"""Figures of the optional components (replay, migration), read through their public APIs.

A component may provide ``health_snapshot()`` (sync or async, returning a mapping of figures); otherwise the
figures come from the spec's methods: ``get_replay_stats()`` for replay, ``list_migrations()`` and
``list_cross_instance_sessions()`` for migration. Duck-typed: health does not import those packages."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.store import SessionStore

Snapshot = Callable[[], Awaitable[dict[str, Any]]]
ACTIVE_TASK = ("pending", "running", "cancelling")
BROKEN_LINK = ("failed", "source_gone")
LIVE_LINK = ("syncing", "idle", "retrying")


async def _call(method: Any, *args: Any) -> Any:
    result = method(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class MissingHealthApi(LookupError):
    """The component has neither ``health_snapshot()`` nor the methods its adapter reads."""


def snapshot_for(name: str, target: object, store: SessionStore | None) -> Snapshot:
    """How to read ``target``'s figures: its own ``health_snapshot()``, else the adapter for ``name``."""
    own = getattr(target, "health_snapshot", None)
    if callable(own):

        async def from_target() -> dict[str, Any]:
            return dict(await _call(own))

        return from_target
    if name == "replay":
        return lambda: replay_snapshot(target)
    if name == "migration":
        return lambda: migration_snapshot(target, store)
    raise MissingHealthApi(f"{type(target).__name__} has no health_snapshot()")


async def replay_snapshot(replay: Any) -> dict[str, Any]:
    """Recordings in progress and stored totals, from ``get_replay_stats()``."""
    stats_method = getattr(replay, "get_replay_stats", None)
    if stats_method is None:
        raise MissingHealthApi(
            f"{type(replay).__name__} has neither health_snapshot() nor get_replay_stats()"
        )
    stats = await _call(stats_method)
    return {
        "recordings_in_progress": int(stats.recording),
        "replays": int(stats.total_replays),
        "stored_bytes": int(stats.stored_bytes),
        "storage_reduction": round(float(stats.storage_reduction), 4),
    }


async def migration_snapshot(migration: Any, store: SessionStore | None) -> dict[str, Any]:
    """Running tasks, recent failures and cross-instance sync links with their lag.

    Sync lag is measured, not guessed: with a session store on the source namespace, a link's lag in events
    is the session's last seq minus the last seq synced, and a link that is behind has been so for at least
    the time since its last sync."""
    list_tasks = getattr(migration, "list_migrations", None)
    list_links = getattr(migration, "list_cross_instance_sessions", None)
    if list_tasks is None or list_links is None:
        raise MissingHealthApi(
            f"{type(migration).__name__} has neither health_snapshot() nor list_migrations()/"
            "list_cross_instance_sessions()"
        )
    tasks = await _call(list_tasks, 50)
    links = await _call(list_links)
    figures: dict[str, Any] = {
        "running_tasks": sum(task.status in ACTIVE_TASK for task in tasks),
        "failed_tasks_recent": sum(task.status == "failed" for task in tasks),
        "sync_links": sum(link.status in LIVE_LINK for link in links),
        "sync_links_failed": sum(link.status in BROKEN_LINK for link in links),
        "sync_errors": sum(int(link.errors) for link in links),
    }
    live = [link for link in links if link.status in LIVE_LINK]
    namespace = getattr(getattr(migration, "config", None), "namespace", None)
    if store is not None and live and namespace == store.keys.namespace:
        async with store.client.pipeline(transaction=False) as pipe:
            for link in live:
                pipe.hget(store.keys.session(link.session_id).meta, "seq")
            seqs = await pipe.execute()
        lag_events, lag_seconds = 0, 0.0
        now = time.time()
        for link, seq in zip(live, seqs, strict=True):
            behind = int(seq) - int(link.last_synced_seq) if seq is not None else 0
            if behind > 0:
                lag_events = max(lag_events, behind)
                since = link.last_sync_at.timestamp() if link.last_sync_at is not None else now
                lag_seconds = max(lag_seconds, now - since)
        figures["sync_lag_events"] = lag_events
        figures["sync_lag_seconds"] = round(lag_seconds, 3)
    return figures
