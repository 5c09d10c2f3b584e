"""Checkpointing phase: a new checkpoint of every session this process's agents are active in."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..errors import HuddleError, SessionNotFoundError
from .models import RecoverySession
from .reporter import Reporter
from .state import ShutdownState

if TYPE_CHECKING:
    from ..core.manager import SessionManager

CHECKPOINT_REASON = "shutdown"


async def checkpoint_sessions(
    manager: SessionManager, state: ShutdownState, reporter: Reporter, concurrency: int
) -> None:
    """Checkpoint (forced, reason ``shutdown``) each session in ``manager.local_members``; results go to state."""
    members = {sid: sorted(agents) for sid, agents in list(manager.local_members.items())}
    limit = asyncio.Semaphore(concurrency)

    async def one(session_id: str, agents: list[str]) -> None:
        async with limit:
            try:
                cp_id = await manager.checkpoint(session_id, reason=CHECKPOINT_REASON, force_snapshot=True)
            except SessionNotFoundError as exc:
                state.gone.append(session_id)
                reporter.progress(state, f"session {session_id} is gone: {exc.message}")
                return
            except HuddleError as exc:
                failed = RecoverySession(
                    session_id=session_id, agents=agents, checkpoint_id=None, error=str(exc)
                )
                state.sessions.append(failed)
                reporter.error(state, f"checkpoint of session {session_id} failed: {exc}")
                return
            seq = int(cp_id.removeprefix("cp-"))
            state.sessions.append(
                RecoverySession(session_id=session_id, agents=agents, checkpoint_id=cp_id, checkpoint_seq=seq)
            )

    await asyncio.gather(*(one(sid, agents) for sid, agents in members.items()))
    reporter.progress(
        state, f"checkpointed {state.sessions_checkpointed} of {len(members)} session(s)",
        failed=state.sessions_failed, gone=len(state.gone),
    )  # fmt: skip
