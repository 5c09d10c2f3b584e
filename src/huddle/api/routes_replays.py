"""Routes: start/stop recordings; list, show, verify, page through, play (SSE) and export (JSON Lines)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse

from ..errors import ReplayNotFoundError, ShuttingDownError
from ..replay.models import ReplayInfo, ReplayOptions, VerifyReport
from ..replay.playback import iter_frames
from .auth import Identity, require_admin
from .context import ApiContext, caller, context
from .problems import error_responses
from .routes_events import STREAM_DOC
from .schemas import ID_RE, NAME_RE, FramePage, Recording, RecordingBody, ReplayList
from .sse import EventStreamResponse
from .streams import frame_json

router = APIRouter(prefix="/v1", tags=["replays"])
Ctx = Annotated[ApiContext, Depends(context)]
Caller = Annotated[Identity, Depends(caller)]
ReplayId = Annotated[str, Path(pattern=ID_RE)]
READ_ERRORS = error_responses(401, 404, 422, 503)
JSONL = "application/jsonl"


@router.post(
    "/sessions/{session_id}/recording",
    status_code=201,
    response_model=Recording,
    responses=error_responses(401, 403, 404, 409, 410, 422, 503),
)
async def start_recording(
    session_id: Annotated[str, Path(pattern=ID_RE)], ctx: Ctx, who: Caller, body: RecordingBody | None = None
) -> Recording:
    """Start recording the session (admin); from now on, or from seq 1 with ``from_start``."""
    require_admin(who)
    from_start = body.from_start if body else False
    replay_id = await ctx.replay.start_recording(session_id, from_start=from_start)
    return Recording(session_id=session_id, replay_id=replay_id)


@router.delete(
    "/sessions/{session_id}/recording",
    response_model=Recording,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def stop_recording(session_id: Annotated[str, Path(pattern=ID_RE)], ctx: Ctx, who: Caller) -> Recording:
    """Record every event up to now and finish the recording this server runs for the session (admin)."""
    require_admin(who)
    replay_id = await ctx.replay.stop_recording(session_id)
    return Recording(session_id=session_id, replay_id=replay_id)


@router.get("/replays", response_model=ReplayList, responses=READ_ERRORS)
async def list_replays(
    ctx: Ctx,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ReplayList:
    """Recordings, newest first."""
    found = await ctx.replay.list_replays(limit + 1, offset)
    more = len(found) > limit
    return ReplayList(replays=found[:limit], next_offset=offset + limit if more else None)


@router.get("/replays/{replay_id}", response_model=ReplayInfo, responses=READ_ERRORS)
async def get_replay(replay_id: ReplayId, ctx: Ctx, who: Caller) -> ReplayInfo:
    """One recording's description."""
    info = await ctx.replay.get_replay(replay_id)
    if info is None:
        raise ReplayNotFoundError(f"replay {replay_id!r} not found", replay_id=replay_id)
    return info


@router.post("/replays/{replay_id}/verify", response_model=VerifyReport, responses=READ_ERRORS)
async def verify_replay(replay_id: ReplayId, ctx: Ctx, who: Caller) -> VerifyReport:
    """Check the whole recording: hash chain, frame order, every state checksum."""
    return await ctx.replay.verify_replay(replay_id)


@router.get("/replays/{replay_id}/frames", response_model=FramePage, responses=READ_ERRORS)
async def frames(
    replay_id: ReplayId,
    ctx: Ctx,
    who: Caller,
    from_index: Annotated[int, Query(ge=0, le=10**12)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> FramePage:
    """A page of frames: index, seq, at, the event and the session state right after it."""
    session = await ctx.replay.start_replay(replay_id)
    validate = ctx.replay.config.enable_state_validation
    page: list[dict[str, object]] = []
    found = iter_frames(ctx.replay.storage, session, start=from_index, validate=validate)
    try:
        async for item in found:
            page.append(frame_json(item, session.info.session_id))
            if len(page) == limit:
                break
    finally:
        await found.aclose()  # type: ignore[attr-defined]
    last = page[-1]["index"] if page else None
    more = isinstance(last, int) and last + 1 < session.info.frames
    return FramePage(frames=page, next_from_index=int(last) + 1 if more and isinstance(last, int) else None)


@router.get("/replays/{replay_id}/stream", response_class=Response, responses=STREAM_DOC)
async def play(
    replay_id: ReplayId,
    ctx: Ctx,
    who: Caller,
    speed: Annotated[float, Query(ge=0, le=1000, description="1 = recorded timing, 0 = no pauses")] = 1.0,
    event_types: Annotated[list[Annotated[str, Query(pattern=NAME_RE)]] | None, Query()] = None,
    agents: Annotated[list[Annotated[str, Query(pattern=ID_RE)]] | None, Query()] = None,
    from_seq: Annotated[int | None, Query(ge=0, le=10**15)] = None,
    to_seq: Annotated[int | None, Query(ge=0, le=10**15)] = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
) -> Response:
    """Play a recording as Server-Sent Events: ``frame`` events (id = frame index), then ``end``."""
    options = ReplayOptions(
        speed=speed, event_types=tuple(event_types) if event_types else None,
        agents=tuple(agents) if agents else None, from_seq=from_seq, to_seq=to_seq,
        start_time=start_time, end_time=end_time,
    )  # fmt: skip
    streams = ctx.streams
    if streams.closing:
        raise ShuttingDownError("the server is shutting down")
    await ctx.replay.start_replay(replay_id)  # 404 before the stream starts
    streams.slots.take()
    return EventStreamResponse(
        streams.replay_frames(ctx.replay, replay_id, options),
        send_timeout=streams.settings.send_timeout,
        on_close=streams.slots.give_back,
    )


@router.get(
    "/replays/{replay_id}/export",
    response_class=StreamingResponse,
    responses={
        200: {"description": "JSON Lines", "content": {JSONL: {"schema": {"type": "string"}}}},
        **READ_ERRORS,
    },
)
async def export(replay_id: ReplayId, ctx: Ctx, who: Caller) -> StreamingResponse:
    """Download the recording as JSON Lines (header line, then one frame a line)."""
    await ctx.replay.start_replay(replay_id)  # 404 before the body starts

    async def lines() -> AsyncIterator[bytes]:
        async for line in ctx.replay.export_replay(replay_id):
            yield line.encode() + b"\n"

    return StreamingResponse(
        lines(),
        media_type=JSONL,
        headers={"content-disposition": f'attachment; filename="{replay_id}.jsonl"'},
    )
