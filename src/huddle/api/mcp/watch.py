"""Resource update notifications: a session listened to (``subscriptions/listen``) is followed on its stream."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.subscriptions import ResourceUpdated, SubscriptionBus

from ...core.manager import SessionManager
from ...errors import HuddleError

log = logging.getLogger("huddle.api.mcp")

SESSION_URI = re.compile(r"huddle://sessions/(?P<sid>[A-Za-z0-9_.:\-]{1,128})(?:/timeline)?")

MAX_WATCHED_SESSIONS = 32
"""Each watched session holds one blocked XREAD connection; more listen requests than this are not followed."""


def session_uris(session_id: str) -> tuple[str, str]:
    """The two resource URIs of a session."""
    return f"huddle://sessions/{session_id}", f"huddle://sessions/{session_id}/timeline"


def _requested_sessions(params: Mapping[str, Any] | None) -> set[str]:
    filters = (params or {}).get("notifications") or {}
    uris = filters.get("resourceSubscriptions") or filters.get("resource_subscriptions") or []
    found = set()
    for uri in uris if isinstance(uris, list) else []:
        match = SESSION_URI.fullmatch(uri) if isinstance(uri, str) else None
        if match is not None:
            found.add(match["sid"])
    return found


class SessionWatch:
    """Server middleware: while a listen stream asks for a session's resources, publish ``resources/updated``
    for every event appended to it (one shared follower per session, stopped with its last listener)."""

    def __init__(self, manager: SessionManager, bus: SubscriptionBus) -> None:
        self.manager = manager
        self.bus = bus
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._listeners: dict[str, int] = {}

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "subscriptions/listen":
            return await call_next(ctx)
        watched = []
        for sid in sorted(_requested_sessions(ctx.params)):
            try:
                # Before the ack: every event appended once the client holds the ack is announced.
                last = (await self.manager.get_session(sid)).last_seq
            except HuddleError as exc:
                log.info("not following %s for resource updates: %s", sid, exc)
                continue
            if self._acquire(sid, last + 1):
                watched.append(sid)
        try:
            return await call_next(ctx)  # runs as long as the listen stream is open
        finally:
            for sid in watched:
                self._release(sid)

    def _acquire(self, session_id: str, from_seq: int) -> bool:
        if session_id not in self._followers:
            if len(self._followers) >= MAX_WATCHED_SESSIONS:
                log.warning("not following %s for resource updates: %d sessions watched", session_id,
                            MAX_WATCHED_SESSIONS)  # fmt: skip
                return False
            self._followers[session_id] = asyncio.create_task(self._follow(session_id, from_seq))
        self._listeners[session_id] = self._listeners.get(session_id, 0) + 1
        return True

    def _release(self, session_id: str) -> None:
        self._listeners[session_id] -= 1
        if self._listeners[session_id] == 0:
            del self._listeners[session_id]
            self._followers.pop(session_id).cancel()

    async def _follow(self, session_id: str, from_seq: int) -> None:
        try:
            async for _event in self.manager.subscribe(session_id, from_seq):
                for uri in session_uris(session_id):
                    await self.bus.publish(ResourceUpdated(uri=uri))
        except HuddleError as exc:  # unknown or expired session, trimmed past: nothing more to announce
            log.info("stopped following %s for resource updates: %s", session_id, exc)
        except Exception:  # a follower must not die silently: log it (its listeners get no more updates)
            log.exception("following %s for resource updates failed", session_id)

    def close(self) -> None:
        """Stop every follower (their listen streams end with the server)."""
        for task in self._followers.values():
            task.cancel()
        self._followers.clear()
        self._listeners.clear()
