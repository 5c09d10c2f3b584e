"""Routes: sessions, members, completion, checkpoints, failure snapshots, stats."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from ..core.manager import SYSTEM_ACTOR
from ..errors import SessionNotFoundError
from ..models import Checkpoint, FailureSnapshot, SessionDocument, SessionStats
from .auth import Identity, default_actor, require_writer
from .context import ApiContext, caller, context
from .problems import NotFoundError, error_responses
from .schemas import (
    ID_RE,
    ActorBody,
    CheckpointBody,
    CheckpointList,
    Completed,
    CreateSessionBody,
    FailureSnapshotList,
    JoinBody,
    Membership,
    SessionPage,
    SessionSummary,
)

router = APIRouter(prefix="/v1", tags=["sessions"])
Ctx = Annotated[ApiContext, Depends(context)]
Caller = Annotated[Identity, Depends(caller)]
SessionId = Annotated[str, Path(pattern=ID_RE)]
READ_ERRORS = error_responses(401, 404, 410, 422, 503)
WRITE_ERRORS = error_responses(401, 403, 404, 409, 410, 413, 422, 503)


def etag(seq: int) -> str:
    """The ETag of a session at ``seq`` (``If-Match`` takes it back as ``expected_seq``)."""
    return f'"{seq}"'


@router.post("/sessions", status_code=201, response_model=SessionDocument, responses=WRITE_ERRORS)
async def create_session(
    body: CreateSessionBody, ctx: Ctx, who: Caller, response: Response
) -> SessionDocument:
    """Create a session with ``agent_id`` as its first member."""
    require_writer(who, body.agent_id)
    session_id = await ctx.manager.create_session(
        body.agent_id, session_id=body.session_id, metadata=body.metadata, ttl=body.ttl,
        initial_state=body.initial_state, record=body.record,
    )  # fmt: skip
    document = await ctx.manager.get_session(session_id)
    response.headers["Location"] = f"/v1/sessions/{session_id}"
    response.headers["ETag"] = etag(document.last_seq)
    return document


def _summary(document: SessionDocument) -> SessionSummary:
    return SessionSummary(
        session_id=document.session_id, status=document.status, state=document.state, creator=document.creator,
        agents=sorted(document.agents), last_seq=document.last_seq, created_at=document.created_at,
        updated_at=document.updated_at, broken_since=document.broken_since, in_grace=document.in_grace,
    )  # fmt: skip


async def _documents(ctx: ApiContext, ids: list[str]) -> list[SessionDocument | None]:
    async def one(session_id: str) -> SessionDocument | None:
        try:
            return await ctx.manager.get_session(session_id)
        except SessionNotFoundError:
            return None  # expired between the index read and now

    return list(await asyncio.gather(*(one(session_id) for session_id in ids)))


@router.get("/sessions", response_model=SessionPage, responses=READ_ERRORS)
async def list_sessions(
    ctx: Ctx,
    who: Caller,
    agent: Annotated[str | None, Query(pattern=ID_RE, description="only sessions this agent is in")] = None,
    state: Annotated[str | None, Query(max_length=64, description="only sessions in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,9}$", description="next_cursor of the previous page")
    ] = None,
) -> SessionPage:
    """Live sessions, most recently active first (filter by member agent and by state), paginated."""
    position = int(cursor) if cursor else 0
    # Only as much of the active index as this page needs is read (the core stops after ``want`` live ids);
    # a state filter that skips sessions widens the read until the page is full or the index is exhausted.
    want = position + limit + 1
    ids, exhausted = await _session_ids(ctx, agent, want)
    found: list[SessionSummary] = []
    while len(found) < limit:
        if position >= len(ids):
            if exhausted:
                break
            want *= 2
            ids, exhausted = await _session_ids(ctx, agent, want)
            continue
        chunk = ids[position : position + limit]
        for offset, document in enumerate(await _documents(ctx, chunk)):
            if document is not None and (state is None or document.state == state):
                found.append(_summary(document))
                if len(found) == limit:
                    position += offset + 1
                    break
        else:
            position += len(chunk)
    more = position < len(ids) or not exhausted
    return SessionPage(sessions=found, next_cursor=str(position) if more else None)


async def _session_ids(ctx: ApiContext, agent: str | None, want: int) -> tuple[list[str], bool]:
    """Up to ``want`` session ids in listing order, and whether that is all of them."""
    if agent:  # an agent's own sessions: one sorted set, read whole
        return await ctx.manager.get_sessions_by_agent(agent), True
    ids = await ctx.manager.list_active_sessions(want)
    return ids, len(ids) < want


@router.get("/sessions/{session_id}", response_model=SessionDocument, responses=READ_ERRORS)
async def get_session(session_id: SessionId, ctx: Ctx, who: Caller, response: Response) -> SessionDocument:
    """The session's current document (its ``ETag`` is the last seq)."""
    document = await ctx.manager.get_session(session_id)
    response.headers["ETag"] = etag(document.last_seq)
    return document


@router.post("/sessions/{session_id}/members", response_model=Membership, responses=WRITE_ERRORS)
async def join(session_id: SessionId, body: JoinBody, ctx: Ctx, who: Caller) -> Membership:
    """Join the session as ``agent_id``."""
    require_writer(who, body.agent_id)
    joined = await ctx.manager.join_session(session_id, body.agent_id)
    return Membership(session_id=session_id, agent_id=body.agent_id, changed=joined)


@router.delete("/sessions/{session_id}/members/{agent_id}", response_model=Membership, responses=WRITE_ERRORS)
async def leave(
    session_id: SessionId, agent_id: Annotated[str, Path(pattern=ID_RE)], ctx: Ctx, who: Caller
) -> Membership:
    """Leave the session (the last leave starts its grace period)."""
    require_writer(who, agent_id)
    left = await ctx.manager.leave_session(session_id, agent_id)
    return Membership(session_id=session_id, agent_id=agent_id, changed=left)


@router.post("/sessions/{session_id}/complete", response_model=Completed, responses=WRITE_ERRORS)
async def complete(session_id: SessionId, ctx: Ctx, who: Caller, body: ActorBody | None = None) -> Completed:
    """Mark the session completed (``actor`` defaults to the token's agent)."""
    actor = default_actor(who, body.actor if body else None)
    require_writer(who, actor)
    seq = await ctx.manager.complete_session(session_id, actor)
    return Completed(session_id=session_id, seq=seq)


@router.post(
    "/sessions/{session_id}/checkpoints", status_code=201, response_model=Checkpoint, responses=WRITE_ERRORS
)
async def create_checkpoint(
    session_id: SessionId, ctx: Ctx, who: Caller, response: Response, body: CheckpointBody | None = None
) -> Checkpoint:
    """Store the session's state now; returns the checkpoint (``actor``: the token's agent, else huddle's)."""
    body = body or CheckpointBody()
    actor = body.actor or who.agent_id or SYSTEM_ACTOR
    require_writer(who, actor)
    checkpoint_id = await ctx.manager.checkpoint(
        session_id, actor=actor, reason=body.reason, force_snapshot=body.force_snapshot
    )
    response.headers["Location"] = f"/v1/sessions/{session_id}/checkpoints/{checkpoint_id}"
    return await ctx.manager.get_checkpoint(session_id, checkpoint_id)


@router.get("/sessions/{session_id}/checkpoints", response_model=CheckpointList, responses=READ_ERRORS)
async def list_checkpoints(
    session_id: SessionId, ctx: Ctx, who: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> CheckpointList:
    """The session's checkpoints, newest first."""
    await ctx.manager.get_session(session_id)  # 404/410 for an unknown session rather than an empty list
    return CheckpointList(checkpoints=await ctx.manager.get_checkpoints(session_id, limit))


@router.get(
    "/sessions/{session_id}/checkpoints/{checkpoint_id}", response_model=Checkpoint, responses=READ_ERRORS
)
async def get_checkpoint(
    session_id: SessionId, checkpoint_id: Annotated[str, Path(pattern=ID_RE)], ctx: Ctx, who: Caller
) -> Checkpoint:
    """One checkpoint (``cp-<seq>``)."""
    return await ctx.manager.get_checkpoint(session_id, checkpoint_id)


@router.get("/failure-snapshots", response_model=FailureSnapshotList, responses=READ_ERRORS)
async def list_failure_snapshots(
    ctx: Ctx, who: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> FailureSnapshotList:
    """Failure snapshots of all sessions, newest first (they outlive their sessions)."""
    return FailureSnapshotList(snapshots=await ctx.manager.list_failure_snapshots(limit))


@router.get(
    "/failure-snapshots/{session_id}/{snapshot_id}", response_model=FailureSnapshot, responses=READ_ERRORS
)
async def get_failure_snapshot(
    session_id: SessionId,
    snapshot_id: Annotated[str, Path(pattern=r"^[0-9]{1,20}-[0-9]{1,20}$", description="a stream entry id")],
    ctx: Ctx,
    who: Caller,
) -> FailureSnapshot:
    """One failure snapshot."""
    found = await ctx.manager.get_failure_snapshot(session_id, snapshot_id)
    if found is None:
        raise NotFoundError(f"no failure snapshot {snapshot_id!r} of session {session_id!r} (or it expired)")
    return found


@router.get("/stats", response_model=SessionStats, responses=READ_ERRORS)
async def stats(
    ctx: Ctx, who: Caller, scan_events: Annotated[bool, Query(description="also read the event logs")] = True
) -> SessionStats:
    """Statistics computed from the stored sessions."""
    return await ctx.manager.get_stats(scan_events=scan_events)
