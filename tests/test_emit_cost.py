"""The cheaper emit path keeps its guarantees: retry tokens, function/script fallback, TTL drift bound, trimming."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from huddle import EmbeddedRedis, NotAMemberError, SessionManager, SessionManagerConfig
from huddle.backend.acl import create_acl_user
from huddle.backend.autopipeline import marks_resends, retry_mark
from huddle.core.store import EmitResult
from huddle.errors import CorruptSessionDataError

MakeManager = Callable[..., Awaitable[SessionManager]]
EVENT = {"type": "modified", "data": {"n": 1}}


async def emit_args(
    manager: SessionManager, sid: str, actor: str, token: str, mode: str | memoryview
) -> list[Any]:
    """emit.lua's arguments as ``emit_event`` builds them (defaults), with the given token and token mode."""
    keys = manager.keys.session(sid)
    settings = await manager.emit_settings(True, True)
    return [sid, actor, "modified", '{"data":{"n":1}}', token, "", "", "", settings, keys.channel, mode]


async def test_a_resent_append_with_a_claimed_token_returns_its_seq_and_writes_nothing(
    manager: SessionManager,
) -> None:
    """Mode 'z' (redis-py's own paths re-send identical bytes): the token is claimed in the tokens zset."""
    sid = await manager.create_session("a1")
    keys = manager.keys.session(sid)
    args = await emit_args(manager, sid, "a1", os.urandom(8).hex(), "z")
    first = await manager._run_emit(keys.emit, list(args), 0, 0)
    await manager.emit_event(sid, EVENT, "a1")  # another writer in between
    length, version = await manager.client.xlen(keys.events), (await manager.get_session(sid)).version
    again = await manager._run_emit(keys.emit, list(args), 0, 0)
    assert first == 2  # a plain append answers with its seq alone
    assert isinstance(again, EmitResult) and again.seq == 2 and again.duplicate
    assert await manager.client.xlen(keys.events) == length
    assert (await manager.get_session(sid)).version == version
    entries = await manager.client.xrange(keys.events, "0-2", "0-2")
    assert "k" not in entries[0][1] and "r" not in entries[0][1]  # not in the event, not a caller key
    assert await manager.client.hlen(keys.idem) == 0
    assert await manager.client.zscore(keys.tokens, args[4]) == 2


async def test_a_first_send_rides_on_its_event_and_its_re_send_finds_it(manager: SessionManager) -> None:
    """Mode 'f' (auto-pipelined client): nothing but an 'r' field on the event; the auto-pipeline turns the mark
    into 'r' once the command is on the wire, and the re-sent command finds the event in the log."""
    sid = await manager.create_session("a1")
    keys = manager.keys.session(sid)
    assert marks_resends(manager.client)
    mark = retry_mark()
    args = await emit_args(manager, sid, "a1", "tok-first", mark)
    assert await manager._run_emit(keys.emit, list(args), 0, 0) == 2
    assert bytes(mark) == b"r"  # packed for the wire: any later send of this command says it is a re-send
    entries = await manager.client.xrange(keys.events, "0-2", "0-2")
    assert entries[0][1]["r"] == "tok-first"
    assert await manager.client.exists(keys.tokens) == 0  # no per-event write beyond the event itself
    for _ in range(70):  # the re-send is found even when it is not among the last 64 events
        await manager.emit_event(sid, EVENT, "a1")
    length, version = await manager.client.xlen(keys.events), (await manager.get_session(sid)).version
    again = await manager._run_emit(keys.emit, list(args), 0, 0)
    assert isinstance(again, EmitResult) and again.seq == 2 and again.duplicate
    assert await manager.client.xlen(keys.events) == length
    assert (await manager.get_session(sid)).version == version


async def test_a_first_send_that_arrives_after_its_re_send_writes_nothing(manager: SessionManager) -> None:
    """Reordered delivery (the first send delayed on a dead connection): the re-send wrote and marked meta 'rt',
    so the late first send checks the tokens zset and returns the same seq."""
    sid = await manager.create_session("a1")
    keys = manager.keys.session(sid)
    resent = await manager._run_emit(keys.emit, await emit_args(manager, sid, "a1", "tok-late", "r"), 0, 0)
    assert resent == 2 and await manager.client.zscore(keys.tokens, "tok-late") == 2
    await manager.emit_event(sid, EVENT, "a1")
    length = await manager.client.xlen(keys.events)
    late = await manager._run_emit(keys.emit, await emit_args(manager, sid, "a1", "tok-late", "f"), 0, 0)
    assert isinstance(late, EmitResult) and late.seq == 2 and late.duplicate
    assert await manager.client.xlen(keys.events) == length
    assert 0 < await manager.client.pttl(keys.tokens) <= manager.config.default_ttl * 1000


async def test_a_refused_append_gives_its_retry_token_back(make_manager: MakeManager) -> None:
    plain = await make_manager(auto_pipeline=False)  # mode 'z': tokens are claimed in the zset
    assert not marks_resends(plain.client)
    sid = await plain.create_session("a1")
    keys = plain.keys.session(sid)
    with pytest.raises(NotAMemberError):
        await plain.emit_event(sid, EVENT, "stranger")
    assert await plain.client.exists(keys.tokens) == 0
    await plain.emit_event(sid, EVENT, "a1")
    with pytest.raises(NotAMemberError):
        await plain.emit_event(sid, EVENT, "stranger")
    assert await plain.client.zcard(keys.tokens) == 2  # the first append's token and the set's sentinel


async def test_every_session_key_gets_the_ttl_including_the_tokens_zset(make_manager: MakeManager) -> None:
    manager = await make_manager(auto_pipeline=False)
    sid = await manager.create_session("a1", ttl=600)
    await manager.emit_event(sid, EVENT, "a1")
    keys = manager.keys.session(sid)
    for key in (keys.meta, keys.events, keys.agents, keys.tokens):
        assert 595_000 < await manager.client.pttl(key) <= 600_000, key  # 5 s of slack for a slow run
    await manager.emit_event(sid, EVENT, "a1", idempotency_key="k-1")
    assert 0 < await manager.client.pttl(keys.idem) <= 600_000  # created by this call: it gets the lifetime


async def test_a_new_tokens_zset_gets_a_ttl_even_within_the_drift_bound(make_manager: MakeManager) -> None:
    """The tokens zset lost (FLUSH of that key, an import): the next append must not leave it without TTL."""
    manager = await make_manager(auto_pipeline=False)
    sid = await manager.create_session("a1")
    await manager.emit_event(sid, EVENT, "a1")
    keys = manager.keys.session(sid)
    await manager.client.delete(keys.tokens)
    await manager.emit_event(sid, EVENT, "a1")
    assert await manager.client.pttl(keys.tokens) > 0


async def test_the_ttl_is_kept_within_the_drift_bound_without_a_refresh_per_event(
    manager: SessionManager, redis_server: EmbeddedRedis
) -> None:
    sid = await manager.create_session("a1")
    await manager.emit_event(sid, EVENT, "a1")
    admin = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await admin.config_resetstat()
    started = time.monotonic()
    for _ in range(20):
        await manager.emit_event(sid, EVENT, "a1")
    elapsed = time.monotonic() - started
    stats = await admin.info("commandstats")
    await admin.aclose()
    # A full refresh (6 PEXPIREs) at most once per second of the run (the drift bound is 1 s here), plus the
    # checkpoints key after each of the 2 checkpoints; refreshing per event would be 20 x 6.
    refreshes = 1 + int(elapsed)
    assert stats.get("cmdstat_pexpire", {}).get("calls", 0) <= 6 * refreshes + 2
    ttl_ms = manager.config.default_ttl * 1000
    for key in manager.keys.session(sid).emit[:3]:
        assert ttl_ms - 1000 - 2000 < await manager.client.pttl(key) <= ttl_ms  # bound + test slack


async def test_tokens_and_keys_of_trimmed_events_go_with_them(make_manager: MakeManager) -> None:
    manager = await make_manager(max_events_per_session=100, checkpoint_interval=1000, auto_pipeline=False)
    sid = await manager.create_session("a1")
    for i in range(300):
        key = f"key-{i}" if i % 3 == 0 else None
        await manager.emit_event(sid, EVENT, "a1", idempotency_key=key)
    keys = manager.keys.session(sid)
    doc = await manager.get_session(sid)
    length = await manager.client.xlen(keys.events)
    assert 100 <= length <= 100 + 100 // 32 and length == doc.last_seq - doc.first_seq + 1
    assert [e.seq for e in await manager.get_events(sid)] == list(range(doc.first_seq, doc.last_seq + 1))
    assert await manager.client.zcard(keys.tokens) <= length + 64
    low = await manager.client.zrange(keys.tokens, 0, 0, withscores=True)
    assert low[0][1] >= doc.first_seq - 64
    kept = {field for field in await manager.client.hkeys(keys.idem)}
    stored = {fields["k"] for _, fields in await manager.client.xrange(keys.events) if "k" in fields}
    assert kept == stored  # exactly the keys of the events still in the log


async def test_last_seen_moves_at_most_every_index_refresh(make_manager: MakeManager) -> None:
    eager = await make_manager(index_refresh_ms=0)
    sid = await eager.create_session("a1")
    before = (await eager.get_session(sid)).agents["a1"].last_seen
    await eager.emit_event(sid, EVENT, "a1")
    assert (await eager.get_session(sid)).agents["a1"].last_seen >= before
    lazy = await make_manager(index_refresh_ms=60_000)
    sid = await lazy.create_session("a1")
    raw = await lazy.client.hget(lazy.keys.session(sid).agents, "a1")
    await lazy.emit_event(sid, EVENT, "a1")
    assert await lazy.client.hget(lazy.keys.session(sid).agents, "a1") == raw


async def test_the_function_library_is_loaded_again_after_a_function_flush(
    manager: SessionManager, redis_server: EmbeddedRedis
) -> None:
    sid = await manager.create_session("a1")
    assert await manager.emit_event(sid, EVENT, "a1") == 2
    admin = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    version = tuple(int(p) for p in (await admin.info("server"))["redis_version"].split(".")[:2])
    if version < (7, 0):
        assert manager.store.scripts.functions is False  # 6.2: the scripts do the work
    else:
        assert manager.store.scripts.functions is True
        await admin.function_flush()
    await admin.aclose()
    assert await manager.emit_event(sid, EVENT, "a1") == 3
    assert await manager.emit_events(sid, [EVENT, EVENT], "a1") == [4, 5]
    assert [e.seq for e in await manager.get_events(sid)] == [1, 2, 3, 4, 5]


@pytest.fixture
async def admin(redis_server: EmbeddedRedis) -> AsyncIterator[Any]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def test_a_user_without_functions_appends_through_the_scripts(
    admin: Any, redis_server: EmbeddedRedis, namespace: str
) -> None:
    name, password = f"u{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await create_acl_user(admin, name, password, namespace)
    try:
        version = tuple(int(p) for p in (await admin.info("server"))["redis_version"].split(".")[:2])
        if version >= (7, 0):  # 6.2 has no functions at all: the same fallback, reached by "unknown command"
            await admin.execute_command("ACL", "SETUSER", name, "-fcall", "-function")
        config = SessionManagerConfig(
            redis_url=redis_server.url, username=name, password=password, namespace=namespace
        )
        async with SessionManager(config) as manager:
            sid = await manager.create_session("a1")
            assert await manager.emit_event(sid, EVENT, "a1") == 2
            assert await manager.emit_events(sid, [EVENT, EVENT], "a1") == [3, 4]
            assert manager.store.scripts.functions is False
    finally:
        await admin.execute_command("ACL", "DELUSER", name)


@pytest.mark.cluster
async def test_on_a_cluster_a_primary_without_the_library_gets_it_on_first_use() -> None:
    from huddle.backend.topology import EmbeddedCluster

    with EmbeddedCluster(masters=3, replicas=0) as cluster:
        config = SessionManagerConfig(redis_url=cluster.url, namespace=f"t{uuid.uuid4().hex[:10]}")
        async with SessionManager(config) as manager:
            sids = cluster.ids_on_every_master(lambda sid: manager.keys.session(sid).meta, 1)
            for sid in sids:
                await manager.create_session("a1", session_id=sid)
            flushed = cluster.node_of_key(manager.keys.session(sids[0]).meta)
            node = aioredis.Redis(port=flushed.port)
            version = tuple(int(p) for p in (await node.info("server"))["redis_version"].split(".")[:2])
            if version >= (7, 0):
                await node.function_flush()
                assert await node.function_list() == []
            for sid in sids:
                assert await manager.emit_event(sid, EVENT, "a1") == 2
                assert await manager.emit_events(sid, [EVENT] * 3, "a1") == [3, 4, 5]
            if version >= (7, 0):
                assert len(await node.function_list()) == 1
            await node.aclose()


async def test_concurrent_appends_that_find_the_library_gone_load_it_once(
    manager: SessionManager, redis_server: EmbeddedRedis
) -> None:
    sid = await manager.create_session("a1")
    admin = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    version = tuple(int(p) for p in (await admin.info("server"))["redis_version"].split(".")[:2])
    if version < (7, 0):
        await admin.aclose()
        pytest.skip("Redis Functions need 7.0+")
    await admin.function_flush()
    await admin.config_resetstat()
    seqs = await asyncio.gather(*(manager.emit_event(sid, EVENT, "a1") for _ in range(20)))
    stats = await admin.info("commandstats")
    await admin.aclose()
    assert len(set(seqs)) == 20
    assert [e.seq for e in await manager.get_events(sid)] == list(range(1, 24))  # + checkpoints 12, 23
    assert stats["cmdstat_function|load"]["calls"] == 1


async def test_a_resent_batch_larger_than_the_log_is_still_recognised(make_manager: MakeManager) -> None:
    """The batch's retry token is scored with its last seq, so it lives as long as any event of the batch."""
    manager = await make_manager(max_events_per_session=20, checkpoint_interval=1000)
    sid = await manager.create_session("a1")
    manager._retry_token = lambda: "fixed-token"  # type: ignore[method-assign]  # both calls = one re-sent command
    batch = [EVENT] * 100  # trims the log past seq 64: tokens below the log are dropped in that step
    first = await manager.emit_events(sid, batch, "a1")
    length = await manager.client.xlen(manager.keys.session(sid).events)
    assert await manager.emit_events(sid, batch, "a1") == first == list(range(2, 102))
    assert await manager.client.xlen(manager.keys.session(sid).events) == length


async def test_checkpoints_list_the_members_after_joins_and_leaves_between_emits(
    manager: SessionManager,
) -> None:
    """The members CSV a checkpoint stores is remembered between emits (Functions); joins and leaves in between
    (also one leave + one join, same count) must show in the next checkpoint."""
    sid = await manager.create_session("a1")
    await manager.join_session(sid, "a2")

    async def next_checkpoint_agents() -> list[str]:
        before = len(await manager.get_checkpoints(sid))
        while len(await manager.get_checkpoints(sid)) == before:
            await manager.emit_event(sid, EVENT, "a1")
        return sorted((await manager.get_checkpoints(sid))[0].agents)  # newest first

    assert await next_checkpoint_agents() == ["a1", "a2"]
    assert await next_checkpoint_agents() == ["a1", "a2"]  # from the remembered list
    await manager.join_session(sid, "a3")
    assert await next_checkpoint_agents() == ["a1", "a2", "a3"]
    await manager.leave_session(sid, "a2")
    await manager.join_session(sid, "a4")
    assert await next_checkpoint_agents() == ["a1", "a3", "a4"]
    await manager.client.hdel(manager.keys.session(sid).agents, "a4")  # behind huddle's back: count differs
    assert await next_checkpoint_agents() == ["a1", "a3"]


@pytest.mark.parametrize("field", ["seq", "ver", "ttl", "ncp", "idx", "first"])
async def test_corrupt_meta_numbers_refuse_appends_with_a_typed_error_and_write_nothing(
    manager: SessionManager, field: str
) -> None:
    sid = await manager.create_session("a1")
    await manager.emit_event(sid, EVENT, "a1")
    keys = manager.keys.session(sid)
    for garbage in ("abc", "-1", "1e309", "nan", "", "99999999999999999999999", "1.5"):
        if field in ("ncp", "idx", "ver") and garbage == "1.5":
            continue  # a fraction there is harmless (compared or rewritten whole), not refused
        await manager.client.hset(keys.meta, field, garbage)
        before = [await manager.client.dump(key) for key in keys.emit]
        for call in (
            lambda: manager.emit_event(sid, EVENT, "a1"),
            lambda: manager.emit_events(sid, [EVENT, EVENT], "a1"),
        ):
            with pytest.raises(CorruptSessionDataError) as info:
                await call()
            assert info.value.details["field"] in (field, "seq", "ttl"), (garbage, info.value.details)
            assert [await manager.client.dump(key) for key in keys.emit] == before, (field, garbage)


async def test_a_session_created_again_under_the_same_id_never_gets_the_old_members_in_a_checkpoint(
    manager: SessionManager,
) -> None:
    """The remembered members list is tied to the session's creation: same id, seq, ver and member count after
    an expiry and a new create must still read the new members."""
    sid = await manager.create_session("a1", session_id="s-reused")
    await manager.join_session(sid, "a2")
    keys = manager.keys.session(sid)
    before = len(await manager.get_checkpoints(sid))
    while len(await manager.get_checkpoints(sid)) == before:
        await manager.emit_event(sid, EVENT, "a1")
    seq, ver = await manager.client.hmget(keys.meta, ["seq", "ver"])
    await manager.client.delete(*keys.all, *keys.emit)  # expired
    await asyncio.sleep(0.002)  # a later creation time (ms)
    await manager.create_session("b1", session_id="s-reused")
    await manager.join_session(sid, "b2")
    await manager.client.hset(keys.meta, mapping={"seq": seq, "ver": ver, "ncp": 9})  # the old chain's values
    await manager.emit_event(sid, EVENT, "b1")  # continues the remembered chain, checkpoint due
    assert sorted((await manager.get_checkpoints(sid))[0].agents) == ["b1", "b2"]
