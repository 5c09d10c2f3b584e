"""Copying sessions as units: consistent snapshots read from the source, written atomically on the target."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from ..backend.connection import RedisClient
from ..core.keys import KeySpace
from ..core.scripts import script_source, translate_script_error
from ..core.store import redis_boundary
from ..errors import MigrationError


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
    dumps: tuple[bytes, ...] | None = None
    """DUMP payloads of the six session keys (b"" for an absent key), when read for a RESTORE copy."""
    fingerprint: str = ""
    """The session's fingerprint at export (with ``dumps``; see sessions_fingerprint.lua)."""

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
    fingerprint: str = ""
    """The session's fingerprint read back right after it was written (``verify=True``)."""

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


class RestoreRefusedError(MigrationError):
    """The target's Redis cannot RESTORE the source's payloads (a newer serialization format); copy logically."""

    code = "restore_refused"


class Exporter:
    """Reads whole sessions from the source, each in one atomic script (so every snapshot is consistent).

    Two formats: ``read`` serializes the session as JSON (export_session.lua; any target version, needed by
    'merge' and by sync deltas); ``read`` with ``dump=True`` returns the keys' DUMP payloads
    (export_session_dump.lua) for a target that can RESTORE them: no per-event work on either side."""

    def __init__(self, client: RedisClient, keys: KeySpace, raw: RedisClient | None = None) -> None:
        self.client = client
        self.raw = raw
        self.keys = keys
        self._export: AsyncScript = client.register_script(script_source("export_session"))
        self._dump: AsyncScript | None = (
            raw.register_script(script_source("export_session_dump")) if raw is not None else None
        )

    @redis_boundary
    async def read(self, session_ids: Sequence[str], *, dump: bool = False) -> list[Snapshot | None]:
        """Snapshots of these sessions in one pipelined round trip; None for sessions that do not exist."""
        if not session_ids:
            return []
        if not dump:
            replies = await self._run(self.client, self._export, session_ids)
            return [_json_snapshot(sid, *reply) if reply else None for sid, reply in replies]
        if self.raw is None or self._dump is None:
            raise MigrationError("this exporter has no binary-safe client for DUMP payloads")
        replies = await self._run(self.raw, self._dump, session_ids)
        return [_dump_snapshot(sid, *reply) if reply else None for sid, reply in replies]

    async def _run(
        self, client: RedisClient, script: AsyncScript, session_ids: Sequence[str]
    ) -> list[tuple[str, Any]]:
        """(session id, (script reply..., activity score)) per session, or (id, None) if it does not exist."""
        async with client.pipeline(transaction=False) as pipe:
            for sid in session_ids:
                await script(keys=self.keys.session(sid).all, client=pipe)
                pipe.zscore(self.keys.active_index_for(sid), sid)
            raw = await pipe.execute()
        return [
            (sid, (*raw[2 * i], raw[2 * i + 1]) if raw[2 * i] else None) for i, sid in enumerate(session_ids)
        ]


def _score(score: Any) -> float | None:
    return float(score) if score is not None else None


def _json_snapshot(
    sid: str, payload: Any, meta: Any, events: Any, agents: Any, failure_ids: Any, score: Any
) -> Snapshot:
    return Snapshot(
        session_id=sid,
        meta=_pairs(meta),
        payload=str(payload),
        events=int(events),
        agents=_pairs(agents),
        failure_ids=[str(item) for item in failure_ids],
        active_score=_score(score),
    )


def _dump_snapshot(
    sid: str, meta_flat: Any, agents: Any, failure_ids: Any, events: Any, payloads: Any, ttls: Any,
    fingerprint: Any, score: Any,
) -> Snapshot:  # fmt: skip
    meta = _pairs([_text(item) for item in meta_flat])
    payload = json.dumps({"meta": flat(meta), "ttl": [str(int(ttl)) for ttl in ttls]}, separators=(",", ":"))
    return Snapshot(
        session_id=sid,
        meta=meta,
        payload=payload,
        events=int(events),
        agents=_pairs([_text(item) for item in agents]),
        failure_ids=[_text(item) for item in failure_ids],
        active_score=_score(score),
        dumps=tuple(bytes(item) for item in payloads),
        fingerprint=_text(fingerprint),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
        verify: bool = False,
    ) -> list[ImportResult | Exception]:
        """Import every snapshot in one pipelined round trip; per-session errors come back as exceptions.

        ``verify``: sessions copied from DUMP payloads are read back inside the import script and their
        fingerprint returned (``ImportResult.fingerprint``), to compare with the one taken at export."""
        if not snapshots:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for snap in snapshots:
                args: list[str | int | bytes] = [
                    snap.session_id,
                    task_id,
                    policy,
                    snap.payload,
                    marker_ttl_ms,
                    1 if backup else 0,
                    mode,
                ]
                if snap.dumps is not None:
                    args += ["dump", *snap.dumps, 1 if verify else 0]
                await self._import(keys=self._keys(snap.session_id, task_id), args=args, client=pipe)
            replies = await pipe.execute(raise_on_error=False)
        results: list[ImportResult | Exception] = []
        for snap, reply in zip(snapshots, replies, strict=True):
            if isinstance(reply, ResponseError) and "HUDDLE restore_refused" in str(reply):
                results.append(
                    RestoreRefusedError(f"the target cannot RESTORE the source's payloads: {reply}")
                )
            elif isinstance(reply, ResponseError):
                results.append(translate_script_error(reply))
            elif isinstance(reply, Exception):
                results.append(reply)
            else:
                outcome, seq, ver, updated, state, status, detail, *written = (str(part) for part in reply)
                target = {"seq": seq, "ver": ver, "updated": updated, "state": state, "status": status}
                results.append(ImportResult(snap.session_id, outcome, target, detail, "".join(written)))
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
