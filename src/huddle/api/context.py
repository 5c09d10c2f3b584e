"""What every route needs: the manager, the recorder, the stream service, the caller."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from ..core.manager import SessionManager
from ..replay import SessionReplay
from .auth import Identity, identity_of
from .streams import StreamService


@dataclass
class ApiContext:
    """The services one app serves (kept on ``app.state.huddle``)."""

    manager: SessionManager
    replay: SessionReplay
    streams: StreamService


async def context(request: Request) -> ApiContext:
    """The app's ``ApiContext`` (a FastAPI dependency; async: a plain def would run in a worker thread)."""
    found: ApiContext = request.app.state.huddle
    return found


async def caller(request: Request) -> Identity:
    """The caller's identity (a FastAPI dependency)."""
    return identity_of(request)
