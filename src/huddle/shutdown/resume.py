"""Restart side of recovery: adopt the sessions that are still alive, resume recordings and tasks."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import HuddleError, SessionNotFoundError
from . import components
from .models import RecoveryData, ResumeReport

if TYPE_CHECKING:
    from ..core.manager import SessionManager

log = logging.getLogger("huddle.shutdown")


async def resume_from(
    data: RecoveryData | None, manager: SessionManager | None, replay: object | None, migration: object | None
) -> ResumeReport:
    """Apply ``data`` to the new process's components; every failure is reported, none is raised."""
    adopted: list[str] = []
    gone: list[str] = []
    recordings: list[str] = []
    tasks: list[str] = []
    errors: list[str] = []
    if data is None:
        return ResumeReport(
            sessions_adopted=[], sessions_gone=[], recordings_resumed=[], tasks_resumed=[], errors=[]
        )
    if manager is not None:
        for session in data.sessions:
            try:
                document = await manager.get_session(session.session_id)
            except SessionNotFoundError:
                gone.append(session.session_id)
                continue
            except HuddleError as exc:
                errors.append(f"reading session {session.session_id} failed: {exc}")
                continue
            members = [agent for agent in session.agents if agent in document.agents]
            if document.status != "active" or not members:
                gone.append(session.session_id)
                continue
            for agent in members:
                manager.local_members.add(session.session_id, agent)
            adopted.append(session.session_id)
    if replay is not None and data.recordings:
        recordings, failed = await _resume_recordings(replay, data)
        errors.extend(failed)
    if migration is not None and data.tasks:
        tasks, failed = await components.resume_tasks(migration, list(data.tasks))
        errors.extend(failed)
    return ResumeReport(
        sessions_adopted=adopted,
        sessions_gone=gone,
        recordings_resumed=recordings,
        tasks_resumed=tasks,
        errors=errors,
    )


async def _resume_recordings(replay: object, data: RecoveryData) -> tuple[list[str], list[str]]:
    wanted = [r for r in data.recordings if r.status in ("stopped", "resumable")]
    hook = components.find_hook(replay, components.RECORDING_RESUME_HOOKS)
    if hook is not None:
        try:
            await components.call(hook, wanted)
        except Exception as exc:
            return [], [f"resuming recordings failed: {exc}"]
        return [r.session_id for r in wanted], []
    start = components.find_hook(replay, ("start_recording",))
    if start is None:
        return [], ["the replay component has neither a resume hook nor start_recording"]
    resumed: list[str] = []
    errors: list[str] = []
    for recording in wanted:
        try:
            await components.call(start, recording.session_id)
        except Exception as exc:
            errors.append(f"restarting the recording of {recording.session_id} failed: {exc}")
        else:
            resumed.append(recording.session_id)
    return resumed, errors
