"""Duck-typed hooks into the optional components (replay, migration, health): each may be absent.

A component takes part by having any of the methods looked up here; a missing method means "nothing to do".
Methods may be sync or async."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from .models import RecoveryRecording, RecoveryTask

log = logging.getLogger("huddle.shutdown")

NOT_READY_HOOKS = ("mark_not_ready", "begin_shutdown", "set_shutting_down")
STOP_ACCEPTING_HOOKS = ("stop_accepting",)
CLOSE_HOOKS = ("shutdown", "close", "aclose")
RECORDING_SUSPEND_HOOKS = ("suspend_recordings", "suspend_for_shutdown")
RECORDING_LIST_HOOKS = ("active_recordings", "list_active_recordings", "recording_sessions")
RECORDING_LOOKUP_HOOKS = ("recording",)
RECORDING_STOP_HOOKS = ("stop_recording",)
RECORDING_RESUME_HOOKS = ("resume_recordings", "resume_from_recovery")
TASK_SUSPEND_HOOKS = ("suspend_tasks", "suspend_for_shutdown", "pause_all")
TASK_RESUME_HOOKS = ("resume_tasks", "resume_from_recovery")


def find_hook(component: object, names: Iterable[str]) -> Any | None:
    """The first callable attribute of ``component`` named in ``names``, or None."""
    for name in names:
        hook = getattr(component, name, None)
        if callable(hook):
            return hook
    return None


async def call(hook: Any, *args: Any) -> Any:
    """Call a sync or async hook and return its result."""
    result = hook(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


async def call_first(component: object, names: Iterable[str], *args: Any) -> tuple[bool, Any]:
    """Call the first hook of ``names`` that exists; (False, None) when none does."""
    hook = find_hook(component, names)
    if hook is None:
        return False, None
    return True, await call(hook, *args)


async def mark_not_ready(health: object, reason: str) -> bool:
    """Tell a health component that this process is shutting down (readiness should fail at once)."""
    found, _ = await call_first(health, NOT_READY_HOOKS, reason)
    if not found and callable(getattr(health, "set_ready", None)):
        await call(getattr(health, "set_ready"), False)  # noqa: B009
        found = True
    return found


async def stop_accepting(server: object, reason: str) -> bool:
    """Tell an HTTP server to take no new connections and to end its live streams (with a retry hint)."""
    found, _ = await call_first(server, STOP_ACCEPTING_HOOKS, reason)
    return found


async def close_component(component: object) -> bool:
    """Close a component through its ``shutdown()``/``close()``; False if it has neither."""
    found, _ = await call_first(component, CLOSE_HOOKS)
    return found


def _recording_ids(listed: Any) -> list[str]:
    if isinstance(listed, dict):
        return [str(key) for key in listed]
    return [
        item if isinstance(item, str) else str(getattr(item, "session_id", item)) for item in listed or ()
    ]


async def preserve_recordings(replay: object, candidates: Iterable[str] = ()) -> list[RecoveryRecording]:
    """Flush and stop (or suspend) every recording in progress; what was done goes into the recovery data.

    A component that cannot list its recordings but answers ``recording(session_id)`` is asked about each
    of ``candidates`` (the sessions this process is active in)."""
    found, suspended = await call_first(replay, RECORDING_SUSPEND_HOOKS)
    if found:
        return [_recording_from(item) for item in suspended or ()]
    found, listed = await call_first(replay, RECORDING_LIST_HOOKS)
    if not found:
        lookup = find_hook(replay, RECORDING_LOOKUP_HOOKS)
        if lookup is None:
            return []
        listed = [sid for sid in candidates if await call(lookup, sid) is not None]
    stop = find_hook(replay, RECORDING_STOP_HOOKS)
    recordings: list[RecoveryRecording] = []
    for session_id in _recording_ids(listed):
        if stop is None:
            recordings.append(RecoveryRecording(session_id=session_id, status="resumable"))
            continue
        try:
            replay_id = await call(stop, session_id)
        except Exception as exc:  # one broken recording must not stop the others from being preserved
            log.warning("stopping the recording of %s failed: %s", session_id, exc)
            recordings.append(RecoveryRecording(session_id=session_id, status="failed", error=str(exc)))
            continue
        recordings.append(
            RecoveryRecording(
                session_id=session_id,
                replay_id=None if replay_id is None else str(replay_id),
                status="stopped",
            )
        )
    return recordings


def _recording_from(item: Any) -> RecoveryRecording:
    if isinstance(item, RecoveryRecording):
        return item
    try:
        if isinstance(item, dict):
            return RecoveryRecording.model_validate(item)
        return RecoveryRecording.model_validate(item, from_attributes=True)
    except ValidationError:
        return RecoveryRecording(session_id=str(getattr(item, "session_id", item)), status="resumable")


async def preserve_tasks(migration: object) -> list[RecoveryTask]:
    """Stop running migrations and syncs at a resumable cursor; returns what to resume.

    A component without a suspend hook is read through ``list_cross_instance_sessions()`` (its syncs, with
    the last synced seq as cursor) and ``list_migrations()`` (tasks running now), then closed: SessionMigration
    persists each task's cursor and leaves stopped tasks resumable."""
    found, suspended = await call_first(migration, TASK_SUSPEND_HOOKS)
    if found:
        return [_task_from(item) for item in suspended or ()]
    tasks: list[RecoveryTask] = []
    links = find_hook(migration, ("list_cross_instance_sessions",))
    for link in (await call(links)) if links is not None else ():
        if getattr(link, "status", "") in ("stopped", "source_gone", "failed"):
            continue
        details = {
            "session_id": link.session_id,
            "target_instance": link.target_instance,
            "sync_mode": link.sync_mode,
        }
        task_id = f"{link.session_id}@{link.target_instance}"
        tasks.append(RecoveryTask(kind="sync", task_id=task_id, cursor=link.last_synced_seq, details=details))
    lister = find_hook(migration, ("list_migrations",))
    for task in (await call(lister, 1000)) if lister is not None else ():
        if getattr(task, "status", "") in ("pending", "running"):
            tasks.append(
                RecoveryTask(kind="migration", task_id=task.task_id, cursor=getattr(task, "cursor", None))
            )
    if tasks:
        await close_component(migration)
    return tasks


def _task_from(item: Any) -> RecoveryTask:
    if isinstance(item, RecoveryTask):
        return item
    if isinstance(item, dict):
        return RecoveryTask.model_validate(item)
    return RecoveryTask.model_validate(item, from_attributes=True)


async def resume_tasks(migration: object, tasks: list[RecoveryTask]) -> tuple[list[str], list[str]]:
    """Resume ``tasks`` through the component's resume hook, else task by task; (resumed ids, errors)."""
    hook = find_hook(migration, TASK_RESUME_HOOKS)
    if hook is not None:
        try:
            await call(hook, tasks)
        except Exception as exc:
            return [], [f"resuming migration/sync tasks failed: {exc}"]
        return [task.task_id for task in tasks], []
    resumed: list[str] = []
    errors: list[str] = []
    for task in tasks:
        args: tuple[Any, ...] = (task.task_id,)
        hook = find_hook(migration, ("resume_migration",))
        if task.kind == "sync":
            details = task.details
            args = (details.get("session_id"), details.get("target_instance"), details.get("sync_mode"))
            hook = find_hook(migration, ("setup_cross_instance_sync",))
        if hook is None:
            errors.append(f"the migration component cannot resume {task.kind} {task.task_id}")
            continue
        try:
            await call(hook, *args)
        except Exception as exc:
            errors.append(f"resuming {task.kind} {task.task_id} failed: {exc}")
        else:
            resumed.append(task.task_id)
    return resumed, errors
