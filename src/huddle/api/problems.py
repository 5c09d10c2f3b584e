"""RFC 9457 problem details: every error the API returns, with the ``HuddleError`` code and a fitting status."""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import BaseModel, Field
from starlette.responses import Response

from ..errors import (
    CheckpointNotFoundError,
    ConfigError,
    ConflictError,
    CorruptSessionDataError,
    EventsRolledBackError,
    EventsTrimmedError,
    HuddleError,
    InvalidEventError,
    InvalidIdentifierError,
    InvalidMigrationRequestError,
    InvalidReplayOptionsError,
    MigrationStateError,
    MigrationTaskBusyError,
    MigrationTaskNotFoundError,
    NotAMemberError,
    RedisPermissionError,
    RedisUnavailableError,
    ReplayError,
    ReplayNotFoundError,
    ReplicationNotConfirmedError,
    SequenceConflictError,
    SessionCompletedError,
    SessionExistsError,
    SessionExpiredError,
    SessionNotFoundError,
    ShuttingDownError,
)

log = logging.getLogger("huddle.api")

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 1


class Problem(BaseModel):
    """An RFC 9457 problem document; ``code`` is the ``HuddleError`` code (e.g. ``not_a_member``)."""

    type: str = Field(description="URI naming the problem type (urn:huddle:problem:<code>)")
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class ApiError(HuddleError):
    """An HTTP-level refusal (authentication, access, size, limits) carrying its status."""

    status = 400
    retry_after: int | None = None


class UnauthorizedError(ApiError):
    """No valid token was presented."""

    code = "unauthorized"
    status = 401


class ForbiddenError(ApiError):
    """The token's role does not allow this (e.g. an agent token naming another actor)."""

    code = "forbidden"
    status = 403


class PayloadTooLargeError(ApiError):
    """The request body is larger than the configured limit."""

    code = "payload_too_large"
    status = 413


class TooManyStreamsError(ApiError):
    """The process already serves its maximum number of event streams."""

    code = "too_many_streams"
    status = 503
    retry_after = 5


class InvalidRequestError(ApiError):
    """The request is malformed (bad JSON, wrong field types, bad header)."""

    code = "invalid_request"
    status = 422


class NotFoundError(ApiError):
    """No such route or resource."""

    code = "not_found"
    status = 404


# Most specific first: the first class an error is an instance of decides the status.
STATUS: list[tuple[type[HuddleError], int]] = [
    (SessionExpiredError, 410),
    (EventsTrimmedError, 410),
    (SessionNotFoundError, 404),
    (CheckpointNotFoundError, 404),
    (ReplayNotFoundError, 404),
    (MigrationTaskNotFoundError, 404),
    (SequenceConflictError, 412),
    (EventsRolledBackError, 409),
    (ConflictError, 409),
    (SessionExistsError, 409),
    (SessionCompletedError, 409),
    (MigrationStateError, 409),
    (MigrationTaskBusyError, 409),
    (NotAMemberError, 403),
    (InvalidIdentifierError, 422),
    (InvalidEventError, 422),
    (InvalidReplayOptionsError, 422),
    (InvalidMigrationRequestError, 422),
    (ConfigError, 422),
    (ReplayError, 409),
    (CorruptSessionDataError, 500),  # stored data huddle cannot read: the server's problem, not the caller's
    (RedisUnavailableError, 503),
    (ShuttingDownError, 503),
    (RedisPermissionError, 503),
    (ReplicationNotConfirmedError, 503),
]

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    412: "Precondition failed",
    413: "Content too large",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}


def status_of(exc: HuddleError) -> int:
    """The HTTP status for a huddle error."""
    if isinstance(exc, ApiError):
        return exc.status
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.dumps(details, default=str)))


def problem_body(exc: HuddleError, instance: str | None = None) -> Problem:
    """The problem document for ``exc``."""
    status = status_of(exc)
    return Problem(
        type=f"urn:huddle:problem:{exc.code}",
        title=TITLES.get(status, "Error"),
        status=status,
        detail=exc.message,
        code=exc.code,
        instance=instance,
        details=_jsonable(exc.details),
    )


def problem_response(exc: HuddleError, instance: str | None = None) -> Response:
    """``exc`` as an ``application/problem+json`` response (with ``Retry-After`` on 503)."""
    body = problem_body(exc, instance)
    if body.status == 500:  # a server-side problem (e.g. stored data huddle cannot read): make it visible
        log.error("%s on %s: %s", exc.code, instance, exc.message)
    headers: dict[str, str] = {}
    if body.status == 503:
        retry = exc.retry_after if isinstance(exc, ApiError) and exc.retry_after else RETRY_AFTER_SECONDS
        headers["Retry-After"] = str(retry)
    if body.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="huddle"'
    return Response(body.model_dump_json(), status_code=body.status, media_type=PROBLEM_JSON, headers=headers)


def internal_problem(exc: BaseException, instance: str | None = None) -> Response:
    """A 500 for a bug on our side: logged with its traceback; the body names no internals."""
    log.error("unhandled error on %s", instance, exc_info=exc)
    body = Problem(
        type="urn:huddle:problem:internal_error",
        title=TITLES[500],
        status=500,
        detail="internal error (logged on the server)",
        code="internal_error",
        instance=instance,
    )
    return Response(body.model_dump_json(), status_code=500, media_type=PROBLEM_JSON)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem bodies for ``statuses``."""
    return {
        status: {
            "model": Problem,
            "description": TITLES.get(status, "Error"),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
