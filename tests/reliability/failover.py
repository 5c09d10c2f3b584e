"""Topology fault runs: a Sentinel failover, a Redis Cluster master failover, a cluster slot migration, each
while the workload (``workload.py``) writes to one session; the history checked afterwards.

Faults: ``kill`` SIGKILLs the master (Sentinel / the cluster promote a replica; the old node is restarted and
rejoins as a replica). ``pause`` SIGSTOPs the master until a replica was promoted, then SIGCONTs it: clients that
were waiting on it get their replies from a master that is no longer one (split brain) until it learns it was
replaced: the writes it acknowledges meanwhile are what asynchronous replication loses, unless the caller asked
for ``min_replicas`` (WAIT: the old master has no replica left, so nothing is confirmed). ``migrate`` moves the
session's hash slot to another master (SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE) while it is written."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

from huddle import SessionManager, SessionManagerConfig
from huddle.backend.embedded import EmbeddedRedis
from huddle.backend.sentinel_topology import EmbeddedSentinel
from huddle.backend.topology import EmbeddedCluster, _admin, pause_node, resume_node

from .scenario import RunResult
from .workload import NAMESPACE, Load, run_workload

TOPOLOGIES = ("sentinel", "cluster")
FAULTS = ("kill", "pause", "migrate")


@dataclass(frozen=True)
class FailoverScenario:
    """Which topology, which faults and how many, how much load, and whether writers ask for WAIT."""

    name: str
    topology: str = "sentinel"
    faults: tuple[str, ...] = ("kill",)
    count: int = 2
    """Faults to inject (each one waits for the topology to settle before the next)."""
    min_replicas: int = 0
    writers: int = 3
    concurrency: int = 3
    socket_timeout: float = 5.0
    """huddle's default: long enough that requests stuck on a paused master are answered when it resumes."""
    settle: tuple[float, float] = (0.3, 0.8)
    """Seconds of writing between a settled topology and the next fault."""
    pace: float = 0.005
    """Seconds each writer lane sleeps between calls: a run stays under the 100,000 events a session keeps."""
    down_after_ms: int = 1000
    """Sentinel down-after-milliseconds / cluster-node-timeout."""
    demote_after: float | None = None
    """Sentinel ``pause``: turn the resumed old master into a replica after this many seconds. None: leave it
    to the sentinels, which wait about 8 s (4 x their 2 s publish period) before reconfiguring a master that
    comes back, so that is how long it keeps acknowledging the writes of the clients still connected to it."""
    seed: int = 1


class _Paused:
    """Pids this run paused, resumed whatever happens."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def pause(self, node: EmbeddedRedis) -> None:
        self.pids.append(pause_node(node))

    def resume_all(self) -> None:
        pids, self.pids = self.pids, []
        for pid in pids:
            resume_node(pid)


def _config(url: str, scenario: FailoverScenario) -> SessionManagerConfig:
    return SessionManagerConfig(
        redis_url=url, namespace=NAMESPACE, max_events_per_session=100_000, checkpoint_interval=25,
        socket_timeout=scenario.socket_timeout, connect_timeout=1.0, retry_attempts=5, retry_backoff_base=0.05,
    )  # fmt: skip


def _load(scenario: FailoverScenario) -> Load:
    return Load(
        writers=scenario.writers, concurrency=scenario.concurrency, max_attempts=60,
        min_replicas=scenario.min_replicas, seed=scenario.seed, pace=scenario.pace,
        socket_timeout=scenario.socket_timeout, allow_loss=scenario.min_replicas == 0,
    )  # fmt: skip


async def _faults(
    scenario: FailoverScenario, workers: list[BaseProcess], one: Callable[[str, bool], None]
) -> Counter[str]:
    """Inject ``scenario.count`` faults: ``one(kind, last)`` injects one and, unless it is the last, waits
    until the topology settled."""
    rng = random.Random(scenario.seed * 7919)
    applied: Counter[str] = Counter()
    for n in range(scenario.count):
        await asyncio.sleep(rng.uniform(*scenario.settle))
        if not any(worker.is_alive() for worker in workers):
            break
        kind = scenario.faults[n % len(scenario.faults)]
        await asyncio.to_thread(one, kind, n == scenario.count - 1)
        applied[kind] += 1
    await asyncio.sleep(rng.uniform(*scenario.settle))  # writes on the settled topology after the last fault
    return applied


async def _run_sentinel(scenario: FailoverScenario, started: float) -> RunResult:
    setup = EmbeddedSentinel(replicas=2, sentinels=3, down_after_ms=scenario.down_after_ms)
    await asyncio.to_thread(setup.start)  # stops what it started if it fails
    paused = _Paused()

    def one(kind: str, last: bool) -> None:
        if kind == "kill":
            old = setup.kill_master()
            setup.wait_for_new_master(old, 120)
            if last:
                return  # the other replica follows the new master: WAIT still has a replica to count
            old.start()  # comes back empty, as a master: the sentinels turn it into a replica
        elif kind == "pause":
            old = setup.master()
            paused.pause(old)
            try:
                new = setup.wait_for_new_master(old, 120)
            finally:
                paused.resume_all()
            if scenario.demote_after is not None:
                time.sleep(scenario.demote_after)
                _admin(old.port).execute_command("REPLICAOF", "127.0.0.1", new.port)
        else:
            raise ValueError(f"no {kind!r} fault on Sentinel")
        setup.wait_replicated(60)

    try:
        result = await run_workload(
            _config(setup.url, scenario), setup.url,
            lambda workers: _faults(scenario, workers, one), _load(scenario),
        )  # fmt: skip
        return RunResult(scenario, result.report, time.perf_counter() - started, result.errors)
    finally:
        paused.resume_all()
        await asyncio.to_thread(setup.stop)


async def _run_cluster(scenario: FailoverScenario, started: float) -> RunResult:
    failing = bool({"kill", "pause"} & set(scenario.faults))
    cluster = EmbeddedCluster(masters=3, replicas=1 if failing else 0, node_timeout_ms=scenario.down_after_ms)
    paused = _Paused()
    rng = random.Random(scenario.seed)
    slot = -1

    def one(kind: str, last: bool) -> None:
        old = cluster.node_of_slot(slot)
        if kind == "migrate":
            target = rng.choice([node for node in cluster.masters() if node.port != old.port])
            cluster.migrate_slot(slot, target)
            return
        if kind == "kill":
            cluster.kill(old)
            new = cluster.wait_for_takeover(old, slot, 120)
            old.start()
        elif kind == "pause":
            paused.pause(old)
            try:
                new = cluster.wait_for_takeover(old, slot, 120)
            finally:
                paused.resume_all()
        else:
            raise ValueError(f"no {kind!r} fault on a cluster")
        # Even after the last fault: without a replica the new master could confirm no WAIT.
        cluster.wait_replica_of(old, new, 60)

    try:
        await asyncio.to_thread(cluster.start)
        config = _config(cluster.url, scenario)
        meta_key = SessionManager(config).keys.session
        sid = cluster.ids_on_every_master(lambda s: meta_key(s).meta, per_master=1, prefix="f-")[0]
        slot = cluster.keyslot(meta_key(sid).meta)
        result = await run_workload(
            config, cluster.url, lambda workers: _faults(scenario, workers, one), _load(scenario),
            session_id=sid,
        )  # fmt: skip
        return RunResult(scenario, result.report, time.perf_counter() - started, result.errors)
    finally:
        paused.resume_all()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(cluster.stop)


async def run_failover(scenario: FailoverScenario) -> RunResult:
    """Run one topology scenario end to end and return the checked history."""
    if scenario.topology not in TOPOLOGIES or not set(scenario.faults) <= set(FAULTS):
        raise ValueError(f"unknown topology or fault in {scenario}")
    started = time.perf_counter()
    if scenario.topology == "sentinel":
        return await _run_sentinel(scenario, started)
    return await _run_cluster(scenario, started)
