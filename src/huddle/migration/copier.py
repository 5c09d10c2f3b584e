"""Copying sessions as units: consistent snapshots read from the source, written atomically on the target."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from ..connection import RedisClient
from ..keys import KeySpace
from ..scripts import script_source, translate_script_error
from ..store import redis_boundary


def flat(fields: dict[str, str]) -> list[str]:
    """A hash or stream entry's fields as [field, value, ...] (the order Redis returned them in)."""
    out: list[str] = []
    for name, value in fields.items():
        out.append(name)
        out.append(value)
    return out


def _entries(entries: list[tuple[str, dict[str, str]]]) -> list[list[Any]]:
    return [[entry_id, flat(fields)] for entry_id, fields in entries]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One session as read from the source in one MULTI, ready for import_session.lua."""

    session_id: str
    meta: dict[str, str]
    payload: str
    events: int
    agents: dict[str, str]
    failure_ids: list[str]
    active_score: float | None

    @property
    def seq(self) -> int:
        """The session's last sequence number."""
        return int(self.meta["seq"])


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What import_session.lua did to one session on the target."""

    session_id: str
    outcome: str
    target: dict[str, str] = field(default_factory=dict)
    detail: str = ""

    @property
    def wrote(self) -> bool:
        """True if the session was written on the target."""
        return self.outcome in ("created", "refreshed", "replaced", "merged", "synced")


def _payload(
    meta: dict[str, str],
    events: list[tuple[str, dict[str, str]]],
    agents: dict[str, str],
    checkpoints: list[tuple[str, dict[str, str]]],
    idem: dict[str, str],
    failures: list[tuple[str, dict[str, str]]],
    ttls: Sequence[int],
    cp_first: str = "",
) -> str:
    return json.dumps(
        {
            "meta": flat(meta),
            "events": _entries(events),
            "agents": flat(agents),
            "cps": _entries(checkpoints),
            "idem": flat(idem),
            "fail": _entries(failures),
            "ttl": [str(int(ttl)) for ttl in ttls],
            "cpfirst": cp_first,
        },
        separators=(",", ":"),
    )


def _pairs(items: list[Any]) -> dict[str, str]:
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items), 2)}


class Exporter:
    """Reads whole sessions from the source with export_session.lua (atomic, so each snapshot is consistent)."""

    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys
        self._export: AsyncScript = client.register_script(script_source("export_session"))

    @redis_boundary
    async def read(self, session_ids: Sequence[str]) -> list[Snapshot | None]:
        """Snapshots of these sessions in one pipelined round trip; None for sessions that do not exist."""
        if not session_ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for sid in session_ids:
                await self._export(keys=self.keys.session(sid).all, client=pipe)
                pipe.zscore(self.keys.active_index_for(sid), sid)
            raw = await pipe.execute()
        out: list[Snapshot | None] = []
        for i, sid in enumerate(session_ids):
            reply, score = raw[2 * i], raw[2 * i + 1]
            if not reply:
                out.append(None)
                continue
            payload, meta, events, agents, failure_ids = reply
            out.append(
                Snapshot(
                    session_id=sid,
                    meta=_pairs(meta),
                    payload=str(payload),
                    events=int(events),
                    agents=_pairs(agents),
                    failure_ids=[str(item) for item in failure_ids],
                    active_score=float(score) if score is not None else None,
                )
            )
        return out


@redis_boundary
async def read_delta(
    client: RedisClient,
    keys: KeySpace,
    session_id: str,
    after_seq: int,
    after_cp: str | None,
    after_fail: str | None,
) -> Snapshot | None:
    """The session's changes after the given seq / checkpoint id / failure id, read in one MULTI."""
    k = keys.session(session_id)
    async with client.pipeline(transaction=True) as pipe:
        pipe.hgetall(k.meta).xrange(k.events, f"0-{after_seq + 1}", "+").hgetall(k.agents)
        pipe.xrange(k.checkpoints, f"({after_cp}" if after_cp else "-", "+")
        pipe.xrange(k.checkpoints, "-", "+", count=1)
        pipe.xrange(k.failures, f"({after_fail}" if after_fail else "-", "+")
        for key in k.all:
            pipe.pttl(key)
        meta, events, agents, cps, cp_first, failures, *ttls = await pipe.execute()
    if not meta:
        return None
    first_cp = cp_first[0][0] if cp_first else ""
    payload = _payload(meta, events, agents, cps, {}, failures, ttls, first_cp)
    return Snapshot(
        session_id=session_id,
        meta=meta,
        payload=payload,
        events=len(events),
        agents=agents,
        failure_ids=[entry_id for entry_id, _ in failures],
        active_score=None,
    )


class Importer:
    """Writes snapshots on the target with import_session.lua (pipelined), then refreshes its indexes."""

    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys
        self._import: AsyncScript = client.register_script(script_source("import_session"))
        self._rollback: AsyncScript = client.register_script(script_source("rollback_session"))

    def _keys(self, session_id: str, task_id: str) -> list[str]:
        backup = self.keys.migration_backup(session_id, task_id or "-")
        return [*self.keys.session(session_id).all, self.keys.migration_marker(session_id), *backup.all]

    @redis_boundary
    async def write(
        self,
        snapshots: Sequence[Snapshot],
        *,
        task_id: str,
        policy: str,
        marker_ttl_ms: int,
        backup: bool,
        mode: str = "full",
    ) -> list[ImportResult | Exception]:
        """Import every snapshot in one pipelined round trip; per-session errors come back as exceptions."""
        if not snapshots:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for snap in snapshots:
                args = [
                    snap.session_id,
                    task_id,
                    policy,
                    snap.payload,
                    marker_ttl_ms,
                    1 if backup else 0,
                    mode,
                ]
                await self._import(keys=self._keys(snap.session_id, task_id), args=args, client=pipe)
            replies = await pipe.execute(raise_on_error=False)
        results: list[ImportResult | Exception] = []
        for snap, reply in zip(snapshots, replies, strict=True):
            if isinstance(reply, ResponseError):
                results.append(translate_script_error(reply))
            elif isinstance(reply, Exception):
                results.append(reply)
            else:
                outcome, seq, ver, updated, state, status, detail = (str(part) for part in reply)
                target = {"seq": seq, "ver": ver, "updated": updated, "state": state, "status": status}
                results.append(ImportResult(snap.session_id, outcome, target, detail))
        await self._index([snap for snap, res in zip(snapshots, results, strict=True) if _wrote(res)])
        return results

    async def _index(self, written: Sequence[Snapshot]) -> None:
        """Make the target's global indexes know the written sessions (as the managers' own writes do)."""
        if not written:
            return
        updates: dict[str, dict[str, float]] = {}
        for snap in written:
            sid = snap.session_id
            if snap.meta.get("status") == "active":
                score = snap.active_score if snap.active_score is not None else float(snap.meta["updated"])
                updates.setdefault(self.keys.active_index_for(sid), {})[sid] = score
            for agent, value in snap.agents.items():
                updates.setdefault(self.keys.agent_sessions(agent), {})[sid] = int(value.partition(":")[0])
            for failure_id in snap.failure_ids:
                member = f"{sid}/{failure_id}"
                updates.setdefault(self.keys.failure_index_for(sid), {})[member] = int(
                    failure_id.split("-")[0]
                )
        async with self.client.pipeline(transaction=False) as pipe:
            for key, members in updates.items():
                pipe.zadd(key, members)
            await pipe.execute()

    @redis_boundary
    async def rollback(self, session_ids: Sequence[str], task_id: str) -> list[str]:
        """Undo what ``task_id`` wrote to these sessions; returns each outcome (none, removed, restored)."""
        if not session_ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for sid in session_ids:
                await self._rollback(keys=self._keys(sid, task_id), args=[task_id], client=pipe)
            replies = await pipe.execute()
        async with self.client.pipeline(transaction=False) as pipe:
            for sid, (_, removed, restored, status, updated) in zip(session_ids, replies, strict=True):
                for agent in filter(None, str(removed).split(",")):
                    pipe.zrem(self.keys.agent_sessions(agent), sid)
                pipe.zrem(self.keys.active_index_for(sid), sid)
                if status == "active":
                    pipe.zadd(self.keys.active_index_for(sid), {sid: int(updated)})
                for agent in filter(None, str(restored).split(",")):
                    pipe.zadd(self.keys.agent_sessions(agent), {sid: int(updated or 0)})
            await pipe.execute()
        return [str(reply[0]) for reply in replies]


def _wrote(result: ImportResult | Exception) -> bool:
    return isinstance(result, ImportResult) and result.wrote
