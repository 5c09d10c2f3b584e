"""Validation: per-session digests computed by each server (session_digest.lua) and compared."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from redis.commands.core import AsyncScript
from redis.crc import key_slot

from ..backend.connection import RedisClient, is_cluster
from ..core.keys import KeySpace
from ..core.scripts import script_source
from ..core.store import redis_boundary
from .models import SessionDigest, SessionMismatch

_FIELDS = tuple(SessionDigest.model_fields)


class Digester:
    """Digests of sessions on one Redis."""

    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys
        self._script: AsyncScript = client.register_script(script_source("session_digest"))
        self._fingerprint: AsyncScript = client.register_script(script_source("sessions_fingerprint"))

    @redis_boundary
    async def fingerprints(self, session_ids: Sequence[str]) -> list[str | None]:
        """Cheap exact fingerprints (None if the session does not exist), one script call per hash slot group
        (the whole batch on a standalone server). Only comparable between servers of the same version, and
        unequal ones may still be equal sessions (see sessions_fingerprint.lua)."""
        if not session_ids:
            return []
        groups: dict[int, list[int]] = {}
        cluster = is_cluster(self.client)
        for i, sid in enumerate(session_ids):
            slot = key_slot(self.keys.session(sid).meta.encode()) if cluster else 0
            groups.setdefault(slot, []).append(i)
        async with self.client.pipeline(transaction=False) as pipe:
            for members in groups.values():
                keys = [key for i in members for key in self.keys.session(session_ids[i]).all]
                await self._fingerprint(keys=keys, client=pipe)
            replies = await pipe.execute()
        out: list[str | None] = [None] * len(session_ids)
        for members, reply in zip(groups.values(), replies, strict=True):
            for i, value in zip(members, reply, strict=True):
                out[i] = str(value) or None
        return out

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


@dataclass(slots=True)
class Comparison:
    """What comparing a batch of sessions found."""

    checked: int = 0
    on_target: int = 0
    mismatches: list[SessionMismatch] = field(default_factory=list)


async def compare(
    source: Digester, target: Digester, session_ids: Sequence[str], *, fingerprints: bool = False
) -> Comparison:
    """Compare sessions on both sides. Sessions absent on both sides are not counted as checked.

    ``fingerprints`` (both servers run the same Redis version): first compare the cheap fingerprints; only
    sessions whose fingerprints differ (or that one side lacks) get the full digest comparison, which names
    the differing field (and passes sessions that only differ in encoding)."""
    result = Comparison()
    if fingerprints:
        mine_fp, theirs_fp = await asyncio.gather(
            source.fingerprints(session_ids), target.fingerprints(session_ids)
        )
        undecided = []
        for sid, src_fp, tgt_fp in zip(session_ids, mine_fp, theirs_fp, strict=True):
            if src_fp is not None and src_fp == tgt_fp:
                result.checked += 1
                result.on_target += 1
            elif src_fp is not None or tgt_fp is not None:
                undecided.append(sid)
        session_ids = undecided
        if not session_ids:
            return result
    mine, theirs = await asyncio.gather(source.digests(session_ids), target.digests(session_ids))
    for sid, src, tgt in zip(session_ids, mine, theirs, strict=True):
        if src is None and tgt is None:
            continue
        result.checked += 1
        result.on_target += tgt is not None
        if src is None:
            result.mismatches.append(SessionMismatch(session_id=sid, problem="missing_on_source", target=tgt))
        elif tgt is None:
            result.mismatches.append(SessionMismatch(session_id=sid, problem="missing_on_target", source=src))
        elif src != tgt:
            fields = [name for name in _FIELDS if getattr(src, name) != getattr(tgt, name)]
            result.mismatches.append(
                SessionMismatch(session_id=sid, problem="different", fields=fields, source=src, target=tgt)
            )
    return result


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
