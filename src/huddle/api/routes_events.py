"""Routes: append events (one or an atomic list), read the log, and the live streams (SSE)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response

from ..errors import ShuttingDownError
from .auth import Identity, identity_of, require_writer
from .context import ApiContext, caller, context
from .problems import InvalidRequestError, error_responses
from .routes_sessions import etag
from .schemas import ID_RE, MAX_BATCH, Emitted, EmittedBatch, EventPage, EventSubmission
from .sse import SSE_MEDIA_TYPE, EventStreamResponse

router = APIRouter(prefix="/v1", tags=["events"])
JSON = "application/json"
Ctx = Annotated[ApiContext, Depends(context)]
Caller = Annotated[Identity, Depends(caller)]
SessionId = Annotated[str, Path(pattern=ID_RE)]
_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,18})"?\s*$')
SSE_EVENT = {
    "type": "object",
    "description": "one Server-Sent Event (schemathesis and OpenAPI 3.2 read this schema per event)",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}
STREAM_DOC = {
    200: {"description": "Server-Sent Events", "content": {SSE_MEDIA_TYPE: {"schema": SSE_EVENT}}},
    **error_responses(401, 404, 410, 422, 503),
}


def expected_seq_of(if_match: str | None) -> int | None:
    """``If-Match: "<seq>"`` as ``expected_seq`` (``*`` or no header: no precondition)."""
    if if_match is None or if_match.strip() == "*":
        return None
    found = _ETAG.match(if_match)
    if found is None:
        raise InvalidRequestError(f'If-Match must be "<seq>" (a session ETag), got {if_match!r}')
    return int(found.group(1))


@router.post(
    "/sessions/{session_id}/events",
    status_code=201,
    response_model=Emitted | EmittedBatch,
    responses=error_responses(401, 403, 404, 409, 410, 412, 413, 422, 503),
)
async def emit(
    session_id: SessionId,
    body: Annotated[
        EventSubmission | Annotated[list[EventSubmission], Body(min_length=1, max_length=MAX_BATCH)],
        Body(description="one event, or a list appended atomically (all by the same actor)"),
    ],
    request: Request,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", pattern=ID_RE)] = None,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> Response:
    """Append one event (``{"seq": n}``) or a list of events atomically (``{"seqs": [...]}``)."""
    # The hot route: no sub-dependencies (each costs a resolution per request), ready bytes out.
    ctx: ApiContext = request.app.state.huddle
    who = identity_of(request)
    expected = expected_seq_of(if_match)
    if isinstance(body, EventSubmission):
        require_writer(who, body.actor)
        seq = await ctx.manager.emit_event(
            session_id, body.to_event(), body.actor, expected_seq=expected, idempotency_key=idempotency_key
        )
        return Response(b'{"seq":%d}' % seq, status_code=201, media_type=JSON, headers={"ETag": etag(seq)})
    actors = {item.actor for item in body}
    if len(actors) != 1:
        raise InvalidRequestError("every event of a list must have the same actor", actors=sorted(actors))
    actor = actors.pop()
    require_writer(who, actor)
    seqs = await ctx.manager.emit_events(
        session_id, [item.to_event() for item in body], actor,
        expected_seq=expected, idempotency_key=idempotency_key,
    )  # fmt: skip
    content = EmittedBatch(seqs=seqs).model_dump_json()
    return Response(content, status_code=201, media_type=JSON, headers={"ETag": etag(seqs[-1])})


@router.get(
    "/sessions/{session_id}/events",
    response_model=EventPage,
    responses=error_responses(401, 404, 410, 422, 503),
)
async def read_events(
    session_id: SessionId,
    ctx: Ctx,
    who: Caller,
    from_seq: Annotated[int, Query(ge=0, le=10**15)] = 1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    """Stored events from ``from_seq`` on, oldest first; ``next_from_seq`` is null once the log is read."""
    events = await ctx.manager.get_events(session_id, from_seq, None, limit + 1)
    more = len(events) > limit
    events = events[:limit]
    return EventPage(events=events, next_from_seq=events[-1].seq + 1 if more else None)


def _from_seq(from_seq: int | None, last_event_id: str | None) -> int:
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        if not text.isdigit() or len(text) > 18:
            raise InvalidRequestError(f"Last-Event-ID must be an event seq, got {last_event_id!r}")
        return int(text) + 1
    return 1 if from_seq is None else from_seq


@router.get("/sessions/{session_id}/events/stream", response_class=Response, responses=STREAM_DOC)
async def stream_events(
    request: Request,
    session_id: SessionId,
    ctx: Ctx,
    who: Caller,
    from_seq: Annotated[
        int | None, Query(ge=0, le=10**15, description="first seq to send (default 1)")
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """Server-Sent Events: every event from ``from_seq`` (or after ``Last-Event-ID``) on, then live.

    Frames: ``id: <seq>``, ``event: <type>``, ``data: <event JSON>``; ``completed`` when the session completes;
    ``error`` (a problem document with ``resume_from_seq``) if the reader fell behind trimming or too far behind
    the stream; ``shutdown`` (with a ``retry`` hint) when the server stops. Heartbeats are comments."""
    start = _from_seq(from_seq, last_event_id)
    streams = ctx.streams
    if streams.closing:
        raise ShuttingDownError("the server is shutting down; reconnect to another instance")
    document = await ctx.manager.get_session(session_id)
    streams.slots.take()
    return EventStreamResponse(
        streams.session_events(session_id, start, completed=document.status == "completed"),
        send_timeout=streams.settings.send_timeout,
        on_close=streams.slots.give_back,
        retry_ms=streams.settings.retry_ms,
    )


@router.get("/lifecycle/stream", response_class=Response, responses=STREAM_DOC)
async def stream_lifecycle(ctx: Ctx, who: Caller) -> Response:
    """Server-Sent Events: start, join, leave, complete and checkpoint notices of every session from the moment
    the response starts (the Redis subscription is confirmed first, so a join right after it is never missed)."""
    streams = ctx.streams
    if streams.closing:
        raise ShuttingDownError("the server is shutting down; reconnect to another instance")
    streams.slots.take()
    try:
        notices = await streams.lifecycle()  # subscribed before the response starts: no notice is missed
    except BaseException:
        streams.slots.give_back()
        raise
    return EventStreamResponse(
        notices,
        send_timeout=streams.settings.send_timeout,
        on_close=streams.slots.give_back,
        retry_ms=streams.settings.retry_ms,
    )
