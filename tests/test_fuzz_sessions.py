"""Fuzzing stored session data: every field of a session's meta / agents / checkpoints and its event stream,
overwritten with garbage or a key of the wrong type, must make every read and mutation end in a typed
``HuddleError``, and a refused mutation must leave the session's keys exactly as they were."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

from reliability.fuzz import Tally, garbage_values

from huddle import SessionManager
from huddle.backend.connection import create_client
from huddle.core.keys import SessionKeys

META_FIELDS = ("status", "state", "creator", "created", "updated", "seq", "first", "ver", "ttl", "md", "cp", "cps",
               "ncp", "broken", "idx", "ctok", "grace")  # fmt: skip


async def _session(manager: SessionManager) -> str:
    sid = await manager.create_session("a1", metadata={"k": "v"})
    await manager.join_session(sid, "a2")
    for n in range(12):
        await manager.emit_event(sid, {"type": "modified", "data": {"n": n}}, "a1")
    await manager.checkpoint(sid, force_snapshot=True)
    return sid


def _corruptions(rng: random.Random) -> list[tuple[str, str, str]]:
    """(part, field, value): every meta field, an agent's entry, a checkpoint / event field, wrong key types."""
    plans = [("meta", name, value) for name in META_FIELDS for value in garbage_values(rng)]
    plans += [("meta-del", name, "") for name in META_FIELDS]
    plans += [("agents", "a1", value) for value in garbage_values(rng)]
    for name in ("t", "a", "ts", "d"):
        plans += [("event", name, value) for value in garbage_values(rng)]
    for name in ("state", "status", "agents", "metadata", "reason", "created"):
        plans += [("checkpoint", name, value) for value in garbage_values(rng)[:4]]
    plans += [(part, "wrong-type", "") for part in ("meta", "agents", "events", "checkpoints", "idem")]
    return plans


async def _dump_all(raw: Any, keys: list[str]) -> list[bytes | None]:
    return [await raw.dump(key) for key in keys]


async def _contents(client: Any, keys: list[str]) -> list[Any]:
    """What the keys hold (not DUMP bytes: a hash table's DUMP order changes with rehashing done by reads)."""
    held: list[Any] = []
    for key in keys:
        kind = await client.type(key)
        if kind == "hash":
            held.append(sorted((await client.hgetall(key)).items()))
        elif kind == "stream":
            info = await client.xinfo_stream(key)
            held.append((await client.xrange(key), info["last-generated-id"]))
        elif kind == "string":
            held.append(await client.get(key))
        else:
            held.append(kind)
    return held


async def _fuzz_sessions(manager: SessionManager, tally: Tally, mutations: Tally) -> list[str]:
    """Run every corruption against every call; returns the refused mutations that wrote something anyway."""
    raw = create_client(manager.config, decode_responses=False)
    text = manager.client
    rng = random.Random(18)
    partial_writes: list[str] = []
    try:
        sid = await _session(manager)
        keys = manager.keys.session(sid)
        names = [keys.meta, keys.events, keys.agents, keys.checkpoints, keys.idem]
        pristine = await _dump_all(raw, names)
        ttls = [max(await raw.pttl(key), 0) for key in names]
        event_id = "0-5"
        cp_entry = (await text.xrange(keys.checkpoints, count=1))[0][0]
        cp_id = f"cp-{cp_entry.removeprefix('0-')}"
        for part, name, value in _corruptions(rng):
            await _corrupt(text, keys, event_id, cp_entry, part, name, value)
            label = f"{part}[{name}]={value!r}"[:70]
            reads: dict[str, Callable[[], Awaitable[Any]]] = {
                "get_session": lambda: manager.get_session(sid),
                "get_events": lambda: manager.get_events(sid),
                "get_checkpoints": lambda: manager.get_checkpoints(sid),
                "subscribe": lambda: _first_event(manager, sid),
                "get_checkpoint": lambda: manager.get_checkpoint(sid, cp_id),
                "get_stats": lambda: _stats_survive(manager),
                "sessions_by_agent": lambda: manager.get_sessions_by_agent("a1"),
            }
            for call_name, call in reads.items():
                await tally.attempt(f"{call_name} {label}", call)
            writes: dict[str, Callable[[], Awaitable[Any]]] = {
                "emit_event": lambda: manager.emit_event(sid, {"type": "modified"}, "a1"),
                "emit_events": lambda: manager.emit_events(sid, [{"type": "modified"}] * 2, "a1"),
                "join_session": lambda: manager.join_session(sid, "a3"),
                "leave_session": lambda: manager.leave_session(sid, "a2"),
                "checkpoint": lambda: manager.checkpoint(sid, force_snapshot=True),
                "complete_session": lambda: manager.complete_session(sid, "a1"),
            }
            for call_name, call in writes.items():
                # every mutation meets the corruption (the previous one's restore removed it)
                await _restore(raw, names, pristine, ttls)
                await _corrupt(text, keys, event_id, cp_entry, part, name, value)
                before = await _contents(text, names)
                result = await mutations.attempt(f"{call_name} {label}", call)
                if isinstance(result, BaseException) and await _contents(text, names) != before:
                    partial_writes.append(f"{call_name} {label}: {type(result).__name__}")
            await _restore(raw, names, pristine, ttls)
    finally:
        await raw.aclose()
    return partial_writes


async def _corrupt(
    client: Any, keys: SessionKeys, event_id: str, cp_entry: str, part: str, name: str, value: str
) -> None:
    """Apply one corruption plan (see ``_corruptions``) to the session's keys."""
    if name == "wrong-type":
        key = {"meta": keys.meta, "agents": keys.agents, "events": keys.events,
               "checkpoints": keys.checkpoints, "idem": keys.idem}[part]  # fmt: skip
        await client.delete(key)
        await client.set(key, "garbage")
    elif part == "meta":
        await client.hset(keys.meta, name, value)
    elif part == "meta-del":
        await client.hdel(keys.meta, name)
    elif part == "agents":
        await client.hset(keys.agents, name, value)
    elif part == "event":
        await _rewrite_entry(client, keys.events, event_id, name, value)
    else:
        await _rewrite_entry(client, keys.checkpoints, cp_entry, name, value)


async def _rewrite_entry(client: Any, key: str, entry_id: str, name: str, value: str) -> None:
    """Replace one stream entry's field, keeping the entry's id (streams cannot be edited in place)."""
    entries = await client.xrange(key)
    await client.delete(key)
    for current_id, fields in entries:
        if current_id == entry_id:
            fields = {**fields, name: value}
        await client.xadd(key, fields, id=current_id)


async def _restore(raw: Any, names: list[str], dumps: list[bytes | None], ttls: list[int]) -> None:
    for key, dump, ttl in zip(names, dumps, ttls, strict=True):
        if dump is None:
            await raw.delete(key)
        else:
            await raw.restore(key, ttl, dump, replace=True)


async def _stats_survive(manager: SessionManager) -> None:
    """Statistics over every session skip a damaged one (logged) instead of failing for all of them."""
    stats = await manager.get_stats()
    assert stats.active_sessions <= 1


class SubscriptionHangError(Exception):
    """subscribe() neither yielded nor raised within the bound (a retry loop on a permanent error)."""


async def _first_event(manager: SessionManager, sid: str) -> int:
    try:
        async with asyncio.timeout(1.0):
            async for event in manager.subscribe(sid):
                return event.seq
    except TimeoutError:
        raise SubscriptionHangError("no event and no error within 1 s") from None
    return 0


async def test_corrupted_session_data_gives_typed_errors_and_refused_mutations_write_nothing(
    manager: SessionManager,
) -> None:
    reads, writes = Tally("corrupted session: reads"), Tally("corrupted session: mutations")
    partial = await _fuzz_sessions(manager, reads, writes)
    print(reads.summary())
    print(writes.summary())
    print(
        "untyped:",
        *sorted(
            {u.split(" ", 1)[0] + " " + u.split(": ", 1)[1][:90] for u in reads.untyped + writes.untyped}
        ),
        sep="\n  ",
    )
    print("refused but wrote:", *partial[:30], sep="\n  ")
    assert reads.untyped == [] and writes.untyped == []
    assert partial == []
