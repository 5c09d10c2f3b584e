"""Auto-pipelining (issue 12): commands issued in one loop tick share one round trip, and nothing crosses.

Real redis-server (a cutting TCP proxy in front of it where a connection must break mid-batch)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from cut_proxy import CutProxy
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import DataError, ResponseError

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.backend.autopipeline import AutoPipeline, batchable, batcher_of
from huddle.backend.connection import create_client, ready
from huddle.backend.topology import EmbeddedCluster
from huddle.errors import NotAMemberError, RedisUnavailableError

SPIN = "local n = 0 for i = 1, tonumber(ARGV[1]) do n = n + i end return n"
"""A script that keeps the server (and so every later reply of its batch) busy for a while."""


def batcher(manager: SessionManager) -> AutoPipeline:
    found = batcher_of(manager.client)
    assert found is not None
    return found


def marked(tag: str) -> dict[str, Any]:
    return {"type": "modified", "data": {"tag": tag}}


async def tags_by_seq(manager: SessionManager, sid: str) -> dict[int, str]:
    events = await manager.get_events(sid)
    return {event.seq: (event.data or {})["tag"] for event in events if event.type == "modified"}


async def gapless(manager: SessionManager, sid: str) -> bool:
    seqs = [event.seq for event in await manager.get_events(sid)]
    return seqs == list(range(1, len(seqs) + 1))


@pytest.fixture
async def proxy(redis_server: EmbeddedRedis) -> AsyncIterator[CutProxy]:
    front = await CutProxy(redis_server.port).start()
    yield front
    await front.stop()


async def test_emits_of_one_tick_share_round_trips_and_each_caller_gets_its_own_seq(
    manager: SessionManager,
) -> None:
    agents = [f"agent-{n}" for n in range(20)]
    sid = await manager.create_session(agents[0])
    for agent in agents[1:]:
        await manager.join_session(sid, agent)
    before = batcher(manager).batches

    async def agent_loop(agent: str) -> list[tuple[int, str]]:
        got = []
        for n in range(10):
            tag = f"{agent}/{n}"
            got.append((await manager.emit_event(sid, marked(tag), agent), tag))
        return got

    results = [pair for pairs in await asyncio.gather(*map(agent_loop, agents)) for pair in pairs]
    assert len(results) == 200
    stored = await tags_by_seq(manager, sid)
    assert {seq: tag for seq, tag in results} == stored  # every caller got the seq of its own event
    assert len(stored) == 200 and await gapless(manager, sid)
    # 200 scripts plus the activity-index refreshes, in far fewer round trips than commands
    assert batcher(manager).batches - before < 100


async def test_replies_never_cross_between_callers(redis_server: EmbeddedRedis, namespace: str) -> None:
    client = create_client(SessionManagerConfig(redis_url=redis_server.url))
    try:
        keys = [f"{namespace}:k{n}" for n in range(300)]
        await asyncio.gather(*(client.set(key, f"value of {key}") for key in keys))
        got = await asyncio.gather(*(client.get(key) for key in keys))
        assert got == [f"value of {key}" for key in keys]
        lengths = await asyncio.gather(*(client.strlen(key) for key in keys))
        assert lengths == [len(f"value of {key}") for key in keys]
        assert batcher_of(client) is not None
    finally:
        await client.aclose()


async def test_an_error_reply_reaches_only_its_caller(manager: SessionManager) -> None:
    sid = await manager.create_session("alpha")
    wrong_type = f"{manager.keys.namespace}:a-string"
    await manager.client.set(wrong_type, "x")
    calls: list[Awaitable[Any]] = [manager.emit_event(sid, marked(f"a{n}"), "alpha") for n in range(5)]
    calls.append(manager.emit_event(sid, marked("intruder"), "mallory"))  # HUDDLE not_a_member
    calls.append(manager.client.lpush(wrong_type, "y"))  # WRONGTYPE
    calls += [manager.emit_event(sid, marked(f"b{n}"), "alpha") for n in range(5)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[5], NotAMemberError)
    assert isinstance(outcomes[6], ResponseError) and "WRONGTYPE" in str(outcomes[6])
    seqs = [outcome for n, outcome in enumerate(outcomes) if n not in (5, 6)]
    assert sorted(seqs) == list(range(2, 12))  # type: ignore[type-var]
    assert "intruder" not in (await tags_by_seq(manager, sid)).values()


async def test_an_argument_that_cannot_be_sent_fails_only_its_caller(
    redis_server: EmbeddedRedis, namespace: str
) -> None:
    client = create_client(SessionManagerConfig(redis_url=redis_server.url))
    try:
        calls = [client.set(f"{namespace}:k{n}", n) for n in range(3)]
        calls.append(client.set(f"{namespace}:bad", True))  # redis-py refuses bools (DataError)
        calls += [client.set(f"{namespace}:k{n}", n) for n in range(3, 6)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(outcomes[3], DataError)
        assert outcomes[:3] + outcomes[4:] == [True] * 6
        assert await client.exists(f"{namespace}:bad") == 0
        assert await client.get(f"{namespace}:k5") == "5"
    finally:
        await client.aclose()


async def test_a_caller_cancelled_before_its_batch_is_sent_is_dropped_and_the_others_complete(
    manager: SessionManager,
) -> None:
    sid = await manager.create_session("alpha")
    tasks = [asyncio.ensure_future(manager.emit_event(sid, marked(f"e{n}"), "alpha")) for n in range(10)]
    await asyncio.sleep(0)  # every task queued its script; the batch goes out on the next iteration
    for task in tasks[::2]:
        task.cancel()
    async with asyncio.timeout(10):
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes[::2])
    assert sorted(outcomes[1::2]) == [2, 3, 4, 5, 6]  # type: ignore[type-var]
    assert sorted((await tags_by_seq(manager, sid)).values()) == ["e1", "e3", "e5", "e7", "e9"]


async def test_callers_cancelled_while_their_batch_runs_leave_the_others_replies_intact(
    manager: SessionManager,
) -> None:
    sid = await manager.create_session("alpha")
    await manager.emit_event(sid, marked("warm-up"), "alpha")  # emit_event now sends its script at once
    client = manager.client

    async def spin_call() -> Any:
        return await client.eval(SPIN, 0, 40_000_000)

    spin = asyncio.ensure_future(spin_call())  # first of the batch (tasks start in order): holds the replies
    tasks = [asyncio.ensure_future(manager.emit_event(sid, marked(f"e{n}"), "alpha")) for n in range(10)]
    await asyncio.sleep(0.02)  # the batch is on the wire, the server is still spinning
    assert not spin.done()
    for task in tasks[:5]:
        task.cancel()
    async with asyncio.timeout(10):
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        await spin
    assert all(isinstance(outcome, asyncio.CancelledError) for outcome in outcomes[:5])
    kept = outcomes[5:]
    stored = await tags_by_seq(manager, sid)
    assert len(stored) == 11 and await gapless(manager, sid)  # the cancelled ones were sent: they ran
    assert all(stored[seq] == f"e{n}" for n, seq in enumerate(kept, start=5))  # type: ignore[index]
    after = await manager.emit_event(sid, marked("after"), "alpha")  # the queue is still healthy
    assert after > max(stored) and await gapless(manager, sid)


async def test_a_cut_mid_batch_fails_only_the_callers_whose_replies_were_lost_and_their_retries_write_once(
    proxy: CutProxy, make_config: Callable[..., SessionManagerConfig]
) -> None:
    config = make_config(redis_url=proxy.url, retry_attempts=0)
    async with SessionManager(config) as manager:
        sid = await manager.create_session("alpha")
        await manager.emit_event(
            sid, marked("warm-up"), "alpha"
        )  # from now on emits send their script at once
        keys = [f"key-{n}" for n in range(10)]
        proxy.cut_after_replies(4)
        outcomes = await asyncio.gather(
            *(manager.emit_event(sid, marked(key), "alpha", idempotency_key=key) for key in keys),
            return_exceptions=True,
        )
        assert proxy.cuts == 1
        assert all(isinstance(outcome, int) for outcome in outcomes[:4])  # replies read before the cut
        assert all(isinstance(outcome, RedisUnavailableError) for outcome in outcomes[4:])
        # The server ran all ten; the retries (same idempotency keys) get the first seqs and write nothing.
        retried = [
            await manager.emit_event(sid, marked(key), "alpha", idempotency_key=key) for key in keys[4:]
        ]
        stored = await tags_by_seq(manager, sid)
        assert sorted(stored.values()) == sorted([*keys, "warm-up"])  # each once
        seq_of = {tag: seq for seq, tag in stored.items()}
        assert [*outcomes[:4], *retried] == [seq_of[key] for key in keys]  # in call order: one batch
        assert await gapless(manager, sid)


async def test_with_retries_a_cut_mid_batch_is_healed_by_resending_only_the_unread_commands(
    proxy: CutProxy, make_config: Callable[..., SessionManagerConfig]
) -> None:
    async with SessionManager(make_config(redis_url=proxy.url)) as manager:
        sid = await manager.create_session("alpha")
        await manager.emit_event(sid, marked("warm-up"), "alpha")
        proxy.cut_after_replies(3)
        seqs = await asyncio.gather(*(manager.emit_event(sid, marked(f"e{n}"), "alpha") for n in range(10)))
        assert proxy.cuts == 1
        stored = await tags_by_seq(manager, sid)  # the re-sent scripts carried their tokens: none twice
        assert stored == {2: "warm-up", **{seq: f"e{n}" for n, seq in enumerate(seqs)}}
        assert seqs == sorted(seqs)
        assert await gapless(manager, sid)


async def test_a_batch_whose_request_is_cut_fails_its_callers_and_the_next_batch_reconnects(
    proxy: CutProxy, make_config: Callable[..., SessionManagerConfig]
) -> None:
    async with SessionManager(make_config(redis_url=proxy.url, retry_attempts=0)) as manager:
        sid = await manager.create_session("alpha")
        await manager.emit_event(sid, marked("warm-up"), "alpha")
        proxy.cut_on_request(b"EVALSHA", b"FCALL")  # the request never reaches the server
        outcomes = await asyncio.gather(
            *(manager.emit_event(sid, marked(f"lost{n}"), "alpha") for n in range(5)), return_exceptions=True
        )
        assert all(isinstance(outcome, RedisUnavailableError) for outcome in outcomes), outcomes
        assert await manager.emit_event(sid, marked("next"), "alpha") == 3  # nothing of the cut batch ran
        assert sorted((await tags_by_seq(manager, sid)).values()) == ["next", "warm-up"]


async def test_blocking_commands_bypass_the_queue(redis_server: EmbeddedRedis, namespace: str) -> None:
    client = create_client(SessionManagerConfig(redis_url=redis_server.url))
    try:
        waiting = asyncio.ensure_future(client.blpop([f"{namespace}:list"], timeout=5))
        await asyncio.sleep(0.05)
        async with asyncio.timeout(2):  # would wait for the BLPOP if they shared its connection
            await asyncio.gather(*(client.set(f"{namespace}:k{n}", n) for n in range(5)))
        assert not waiting.done()
        await client.rpush(f"{namespace}:list", "go")
        assert tuple(await waiting) == (f"{namespace}:list", "go")
    finally:
        await client.aclose()
    assert not batchable(("XREAD", "BLOCK", 100, "STREAMS", "s", "0"))
    assert batchable(("XREAD", "COUNT", 10, "STREAMS", "s", "0"))
    assert not batchable(("WAIT", 1, 100)) and not batchable(("MULTI",)) and batchable(("EVALSHA", "x", 0))


async def stops_when_cancelled_at_any_turn(client: Any, stream: str) -> None:
    """Cancelled after 0..11 loop turns, a loop of blocking reads must always end."""
    for turns in range(12):

        async def reader() -> None:
            while True:
                await client.xread({stream: "0-0"}, block=200)

        task = asyncio.ensure_future(reader())
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)  # a lost cancellation would loop forever
        if not done:
            task.cancel()  # a second cancel stops it; the test has failed already
            await asyncio.wait({task}, timeout=5)
        assert done and task.cancelled(), f"cancelled after {turns} turns, the loop went on"


async def test_a_reader_loop_of_blocking_reads_stops_when_cancelled_at_any_point(
    redis_server: EmbeddedRedis, namespace: str
) -> None:
    """On Python 3.11 redis-py's ``wait_for`` around a socket write can swallow a cancellation arriving as the
    write completes (the read then goes on as if nothing happened: such a loop never stops). Unprotected,
    several of the 12 cancel points hang here."""
    client = create_client(SessionManagerConfig(redis_url=redis_server.url, cluster=False))
    await client.ping()
    try:
        await stops_when_cancelled_at_any_turn(client, f"{namespace}:none")
    finally:
        await client.aclose()


async def test_a_pool_of_one_connection_serves_lanes_and_pipelines_alike(
    make_manager: Callable[..., Awaitable[SessionManager]],
) -> None:
    manager = await make_manager(max_connections=1, pool_timeout=5)
    sid = await manager.create_session("alpha")
    async with asyncio.timeout(20):  # an idle lane holding the only connection would starve the MULTI reads
        for _ in range(3):
            calls: list[Awaitable[Any]] = [manager.emit_event(sid, marked("x"), "alpha") for _ in range(5)]
            calls.append(manager.get_session(sid))  # a MULTI pipeline: needs the pool's connection
            outcomes = await asyncio.gather(*calls)
            await asyncio.sleep(0.01)
    assert (await manager.get_session(sid)).last_seq >= 16
    assert all(isinstance(seq, int) for seq in outcomes[:5])


async def test_scripts_flushed_on_the_server_are_reloaded_for_every_queued_caller(
    manager: SessionManager,
) -> None:
    sid = await manager.create_session("alpha")
    await manager.emit_event(sid, marked("warm-up"), "alpha")
    await manager.client.script_flush()
    if int(str((await manager.client.info("server"))["redis_version"]).split(".")[0]) >= 7:
        await manager.client.execute_command("FUNCTION", "FLUSH")  # 7.0+: huddle may call functions (FCALL)
    seqs = await asyncio.gather(*(manager.emit_event(sid, marked(f"e{n}"), "alpha") for n in range(10)))
    assert len(set(seqs)) == 10 and await gapless(manager, sid)


async def test_the_switch_turns_it_off(make_manager: Callable[..., Awaitable[SessionManager]]) -> None:
    manager = await make_manager(auto_pipeline=False)
    assert batcher_of(manager.client) is None
    sid = await manager.create_session("alpha")
    seqs = await asyncio.gather(*(manager.emit_event(sid, marked("x"), "alpha") for _ in range(3)))
    assert sorted(seqs) == [2, 3, 4]


async def test_a_call_queued_at_close_is_answered_and_the_client_stays_usable_like_redis_py(
    redis_server: EmbeddedRedis,
) -> None:
    client = create_client(SessionManagerConfig(redis_url=redis_server.url, cluster=False))
    assert isinstance(client, aioredis.Redis)
    pending = asyncio.ensure_future(client.ping())
    await asyncio.sleep(0)
    async with asyncio.timeout(10):
        await client.aclose()
        assert await pending is True
        assert await client.ping() is True  # redis-py's clients reconnect after aclose; so does this one
    await client.aclose()


# -- Redis Cluster: per-node batches of script calls ---------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(masters=3, replicas=0) as local:
        yield local


@pytest.mark.cluster
async def test_on_a_cluster_script_calls_share_round_trips_per_node_and_a_moved_slot_falls_back(
    cluster: EmbeddedCluster,
) -> None:
    config = SessionManagerConfig(redis_url=cluster.url, namespace=f"t{uuid.uuid4().hex[:10]}")
    async with SessionManager(config) as manager:
        sids = cluster.ids_on_every_master(lambda sid: manager.keys.session(sid).meta, per_master=2)
        for sid in sids:
            await manager.create_session("alpha", session_id=sid)
            await manager.emit_event(sid, marked("warm-up"), "alpha")

        async def burst(tag: str) -> list[int]:
            calls = [
                manager.emit_event(sid, marked(f"{tag}-{sid}-{n}"), "alpha") for sid in sids for n in range(5)
            ]
            return list(await asyncio.gather(*calls))

        await burst("a")
        real = await ready(manager.client)
        assert isinstance(real, RedisCluster) and real.huddle_batchers is not None
        queues = list(real.huddle_batchers._by_node.values())
        assert len(queues) == 3  # one per master
        assert sum(queue.commands for queue in queues) > sum(
            queue.batches for queue in queues
        )  # shared trips
        # Move the slot of one session to another master: its batched calls get MOVED and take the cluster path.
        meta = manager.keys.session(sids[0]).meta
        new = next(node for node in cluster.masters() if node.port != cluster.node_of_key(meta).port)
        assert cluster.migrate_slot(cluster.keyslot(meta), new) > 0
        await burst("b")
        assert cluster.node_of_key(meta).port == new.port
        for sid in sids:
            stored = await tags_by_seq(manager, sid)
            assert sorted(tag for tag in stored.values() if tag != "warm-up") == sorted(
                f"{tag}-{sid}-{n}" for tag in "ab" for n in range(5)
            )
            assert await gapless(manager, sid)


@pytest.mark.cluster
async def test_on_a_cluster_the_switch_leaves_redis_py_s_path(cluster: EmbeddedCluster) -> None:
    config = SessionManagerConfig(
        redis_url=cluster.url, namespace=f"t{uuid.uuid4().hex[:10]}", auto_pipeline=False
    )
    async with SessionManager(config) as manager:
        sid = await manager.create_session("alpha")
        assert await asyncio.gather(*(manager.emit_event(sid, marked("x"), "alpha") for _ in range(3)))
        real = await ready(manager.client)
        assert real.huddle_batchers is None


@pytest.mark.cluster
async def test_on_a_cluster_a_cancelled_blocking_read_loop_stops_too(cluster: EmbeddedCluster) -> None:
    client = create_client(SessionManagerConfig(redis_url=cluster.url))
    try:
        await stops_when_cancelled_at_any_turn(await ready(client), f"t{uuid.uuid4().hex[:8]}:none")
    finally:
        await client.aclose()
