"""Faults of a replicated topology while writing: a Sentinel failover, a Redis Cluster master failover and a
cluster slot migration, each with writer processes, a state writer, a checkpointer and a live subscriber; the
history checker (tests/reliability/history.py) then judges every call. Longer runs: benchmarks/faults.py."""

from __future__ import annotations

import asyncio
import os

import pytest
import redis.asyncio as aioredis
from reliability.failover import FailoverScenario, run_failover
from reliability.proxy import FaultProxy
from reliability.scenario import RunResult

from huddle import EmbeddedRedis, HuddleError, SessionManager, SessionManagerConfig
from huddle.errors import EventsRolledBackError, ReplicationNotConfirmedError

slow = pytest.mark.skipif(
    not os.environ.get("HUDDLE_SLOW_TESTS"), reason="long failover run: set HUDDLE_SLOW_TESTS=1"
)


def _assert_kept_every_promise(result: RunResult, faults: int) -> None:
    report = result.report
    print(f"{result.name}: {report} errors={dict(result.errors)} in {result.seconds:.1f}s")
    assert report.problems == []
    assert report.lost == 0 and report.doubled == 0
    assert report.acknowledged == report.calls, "a call gave up after all its retries"
    assert report.checkpoints_checked > 0
    assert sum(report.faults.values()) == faults, report.faults


@pytest.mark.sentinel
async def test_a_sentinel_failover_with_min_replicas_loses_no_acknowledged_event() -> None:
    scenario = FailoverScenario(
        "sentinel-kill-min1",
        topology="sentinel",
        faults=("kill",),
        count=1,
        min_replicas=1,
        writers=2,
        seed=21,
    )
    _assert_kept_every_promise(await run_failover(scenario), faults=1)


@pytest.mark.cluster
async def test_a_slot_migration_then_a_cluster_failover_with_min_replicas_lose_and_double_nothing() -> None:
    """The session's slot moves to another master while it is written (ASK/TRYAGAIN during the move, MOVED
    after), then that master is killed and its replica promoted."""
    scenario = FailoverScenario(
        "cluster-migrate-kill-min1", topology="cluster", faults=("migrate", "kill"), count=2, min_replicas=1,
        writers=2, seed=22,
    )  # fmt: skip
    result = await run_failover(scenario)
    _assert_kept_every_promise(result, faults=2)
    assert result.report.faults == {"migrate": 1, "kill": 1}


@pytest.mark.cluster
@pytest.mark.slow
@slow
async def test_slot_migrations_back_and_forth_lose_double_and_skip_nothing() -> None:
    scenario = FailoverScenario("cluster-migrate", topology="cluster", faults=("migrate",), count=6, seed=23)
    result = await run_failover(scenario)
    _assert_kept_every_promise(result, faults=6)
    assert result.report.subscriber_events == result.report.stored_events


@pytest.mark.sentinel
@pytest.mark.slow
@slow
@pytest.mark.parametrize(
    ("topology", "faults", "min_replicas"),
    [("sentinel", ("pause",), 2), ("cluster", ("pause", "kill"), 1)],
)
async def test_a_paused_master_with_min_replicas_loses_no_acknowledged_event(
    topology: str, faults: tuple[str, ...], min_replicas: int
) -> None:
    """Split brain: the old master answers its waiting clients after a replica was promoted. With
    ``min_replicas`` = every replica, WAIT cannot be confirmed there (with 2 Sentinel replicas and
    min_replicas=1 it can: the second replica still follows the old master for a moment; docs/reliability.md)."""
    scenario = FailoverScenario(
        f"{topology}-pause-min{min_replicas}", topology=topology, faults=faults, count=len(faults),
        min_replicas=min_replicas, seed=24,
    )  # fmt: skip
    _assert_kept_every_promise(await run_failover(scenario), faults=len(faults))


@pytest.mark.sentinel
@pytest.mark.slow
@slow
async def test_a_paused_master_without_min_replicas_loses_what_it_acknowledged_alone() -> None:
    """What asynchronous replication allows: measured, and never a doubled event or a gap."""
    scenario = FailoverScenario(
        "sentinel-pause-min0", topology="sentinel", faults=("pause",), count=1, demote_after=0.5, seed=25
    )
    result = await run_failover(scenario)
    report = result.report
    print(
        f"{result.name}: lost {report.lost} of {report.acknowledged}; {report} errors={dict(result.errors)}"
    )
    assert report.doubled == 0
    assert report.problems == []
    assert report.lost > 0, "the split brain acknowledged nothing: the run did not exercise the loss window"


# -- what a failover does to a subscriber and to WAIT, played by hand on two plain servers (seconds) ----------
@pytest.fixture
async def two_servers() -> asyncio.AsyncIterator[tuple[EmbeddedRedis, EmbeddedRedis]]:  # type: ignore[name-defined]
    async with EmbeddedRedis() as first, EmbeddedRedis() as second:
        yield first, second


async def test_a_subscription_on_a_master_that_is_demoted_keeps_going(
    two_servers: tuple[EmbeddedRedis, EmbeddedRedis],
) -> None:
    old, new = two_servers
    config = SessionManagerConfig(redis_url=old.url, namespace="pin")
    async with SessionManager(config) as manager:
        sid = await manager.create_session("a")
        seen: list[int] = []

        async def follow() -> None:
            async for event in manager.subscribe(sid):
                seen.append(event.seq)

        task = asyncio.create_task(follow())
        while not seen:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # now blocked in XREAD BLOCK on `old`
        admin = aioredis.Redis(port=old.port)
        await admin.execute_command("REPLICAOF", "127.0.0.1", new.port)
        await admin.aclose()
        await asyncio.sleep(0.5)
        failure = task.exception() if task.done() else None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert failure is None or isinstance(failure, HuddleError), repr(failure)


async def test_a_wait_interrupted_by_a_demotion_is_a_typed_not_confirmed(
    two_servers: tuple[EmbeddedRedis, EmbeddedRedis],
) -> None:
    old, new = two_servers
    config = SessionManagerConfig(
        redis_url=old.url, namespace="pin", socket_timeout=10, replica_wait_timeout_ms=5000
    )
    async with SessionManager(config) as manager:
        sid = await manager.create_session("a")
        emit = asyncio.create_task(manager.emit_event(sid, {"type": "modified"}, "a", min_replicas=1))
        await asyncio.sleep(0.5)  # the event is written; WAIT blocks: `old` has no replica
        admin = aioredis.Redis(port=old.port)
        await admin.execute_command("REPLICAOF", "127.0.0.1", new.port)
        await admin.aclose()
        with pytest.raises(ReplicationNotConfirmedError):
            await emit


async def test_a_subscriber_does_not_skip_events_stored_under_seqs_a_failover_reused(
    two_servers: tuple[EmbeddedRedis, EmbeddedRedis],
) -> None:
    """A failover, played by hand: ``replica`` follows ``old``, is cut off and promoted after seq 6, ``old``
    goes on to seq 11 (the subscriber sees those), then clients are switched to ``replica`` (the proxy points
    there and drops every connection) and write seqs 7.. again. The subscriber must deliver the new 7.. or end
    with a typed error; it may not silently continue at 12."""
    old, replica = two_servers
    admin_old, admin_new = aioredis.Redis(port=old.port), aioredis.Redis(port=replica.port)
    await admin_old.config_set("repl-diskless-sync-delay", 0)  # the first sync at once, not after 5 s
    await admin_new.execute_command("REPLICAOF", "127.0.0.1", old.port)
    proxy = FaultProxy(old.port).start()
    config = SessionManagerConfig(redis_url=proxy.url, namespace="pin", socket_timeout=2, retry_attempts=5)
    try:
        async with SessionManager(config) as manager:
            sid = await manager.create_session("a")
            for n in range(5):
                await manager.emit_event(sid, {"type": "modified", "data": {"n": f"first-{n}"}}, "a")
            # Until the replica holds everything written so far (a WAIT here covers only its own connection).
            for _ in range(500):
                old_info, new_info = await admin_old.info("replication"), await admin_new.info("replication")
                if new_info.get("master_link_status") == "up" and (
                    new_info["master_repl_offset"] == old_info["master_repl_offset"]
                ):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the replica did not catch up")
            await admin_new.execute_command("REPLICAOF", "NO", "ONE")  # promoted with seqs 1..6
            seen: list[tuple[int, object]] = []
            failure: list[BaseException] = []

            async def follow() -> None:
                try:
                    async for event in manager.subscribe(sid):
                        seen.append((event.seq, (event.data or {}).get("n")))
                except Exception as exc:  # judged below: typed is fine, untyped is not
                    failure.append(exc)

            task = asyncio.create_task(follow())
            for n in range(5):  # seqs 7..11 on the old master only: lost in the failover
                await manager.emit_event(sid, {"type": "modified", "data": {"n": f"lost-{n}"}}, "a")
            while len(seen) < 11 and not failure:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            proxy.upstream_port = replica.port
            proxy.inject("reset")
            for n in range(8):  # seqs 7..14 on the new master
                await manager.emit_event(sid, {"type": "modified", "data": {"n": f"new-{n}"}}, "a")
            for _ in range(300):
                if failure or any(value == "new-7" for _seq, value in seen):
                    break
                await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if failure:  # told, with where to resubscribe from
            assert isinstance(failure[0], EventsRolledBackError), repr(failure)
            assert failure[0].details["first_changed_seq"] == 7
        else:
            assert (7, "new-0") in seen, f"the subscriber skipped the new seqs 7..11: {seen[6:]}"
    finally:
        proxy.stop()
        await admin_old.aclose()
        await admin_new.aclose()
