"""Validation: per-session digests computed by each server (session_digest.lua) and compared."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from redis.commands.core import AsyncScript

from ..connection import RedisClient
from ..keys import KeySpace
from ..scripts import script_source
from ..store import redis_boundary
from .models import SessionDigest, SessionMismatch

_FIELDS = tuple(SessionDigest.model_fields)


class Digester:
    """Digests of sessions on one Redis."""

    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys
        self._script: AsyncScript = client.register_script(script_source("session_digest"))

    @redis_boundary
    async def digests(self, session_ids: Sequence[str]) -> list[SessionDigest | None]:
        """One digest per session (None if it does not exist), in one pipelined round trip."""
        if not session_ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for sid in session_ids:
                await self._script(keys=self.keys.session(sid).all, client=pipe)
            replies = await pipe.execute()
        return [_digest(reply) for reply in replies]

    @redis_boundary
    async def existing(self, session_ids: Sequence[str]) -> list[bool]:
        """Which of these sessions exist here."""
        async with self.client.pipeline(transaction=False) as pipe:
            for sid in session_ids:
                pipe.exists(self.keys.session(sid).meta)
            return [bool(hit) for hit in await pipe.execute()]


def _digest(reply: list[object]) -> SessionDigest | None:
    if not reply:
        return None
    status, state, seq, first, md, agents, nev, events, ncps, cps, nidem = (str(part) for part in reply)
    return SessionDigest(
        status=status,
        state=state,
        last_seq=int(seq),
        first_seq=int(first),
        metadata_sha1=md,
        agents=[agent for agent in agents.split(",") if agent],
        event_count=int(nev),
        events_sha1=events,
        checkpoint_count=int(ncps),
        checkpoints_sha1=cps,
        idempotency_keys=int(nidem),
    )


async def compare(
    source: Digester, target: Digester, session_ids: Sequence[str]
) -> tuple[int, list[SessionMismatch]]:
    """Compare sessions on both sides; returns (sessions checked, mismatches). Absent on both: not counted."""
    mine, theirs = await asyncio.gather(source.digests(session_ids), target.digests(session_ids))
    checked, mismatches = 0, []
    for sid, src, tgt in zip(session_ids, mine, theirs, strict=True):
        if src is None and tgt is None:
            continue
        checked += 1
        if src is None:
            mismatches.append(SessionMismatch(session_id=sid, problem="missing_on_source", target=tgt))
        elif tgt is None:
            mismatches.append(SessionMismatch(session_id=sid, problem="missing_on_target", source=src))
        elif src != tgt:
            fields = [name for name in _FIELDS if getattr(src, name) != getattr(tgt, name)]
            mismatches.append(
                SessionMismatch(session_id=sid, problem="different", fields=fields, source=src, target=tgt)
            )
    return checked, mismatches


async def only_on_target(
    source: Digester, batches: AsyncIterator[tuple[list[str], object]]
) -> AsyncIterator[list[str]]:
    """From batches of target session ids, those the source does not have."""
    async for ids, _ in batches:
        if ids:
            found = await source.existing(ids)
            missing = [sid for sid, hit in zip(ids, found, strict=True) if not hit]
            if missing:
                yield missing
