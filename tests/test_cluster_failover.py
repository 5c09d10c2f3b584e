"""A cluster master dies: its replica is promoted, other slots keep working, the affected sessions recover."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from huddle import SessionManager, SessionManagerConfig
from huddle.backend.topology import EmbeddedCluster
from huddle.errors import RedisUnavailableError

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(masters=3, replicas=1, node_timeout_ms=1000) as local:
        yield local


async def test_killing_a_master_leaves_other_slots_working_and_its_sessions_recover(
    cluster: EmbeddedCluster,
) -> None:
    config = SessionManagerConfig(
        redis_url=cluster.url, namespace=f"t{uuid.uuid4().hex[:8]}", socket_timeout=2, connect_timeout=1
    )
    async with SessionManager(config) as manager:
        sids = cluster.ids_on_every_master(lambda sid: manager.keys.session(sid).meta, per_master=2)
        for sid in sids:
            await manager.create_session("alpha", session_id=sid)
        victim = cluster.node_of_key(manager.keys.session(sids[0]).meta)
        affected = {s for s in sids if cluster.node_of_key(manager.keys.session(s).meta).port == victim.port}
        acked: dict[str, list[int]] = {sid: [] for sid in sids}
        failures: dict[str, int] = dict.fromkeys(sids, 0)
        stop = asyncio.Event()

        async def keep_emitting(sid: str) -> None:
            while not stop.is_set():
                try:
                    acked[sid].append(await manager.emit_event(sid, {"type": "modified"}, "alpha"))
                except RedisUnavailableError:
                    failures[sid] += 1
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.005)

        writers = [asyncio.create_task(keep_emitting(sid)) for sid in sids]
        await asyncio.sleep(0.3)
        before = {sid: len(seqs) for sid, seqs in acked.items()}
        cluster.kill(victim)
        promoted = await asyncio.to_thread(cluster.wait_for_failover, victim, 30)
        during = {sid: len(seqs) for sid, seqs in acked.items()}
        for _ in range(
            300
        ):  # until every session wrote again (the client learns the new slot map), 15 s at most
            await asyncio.sleep(0.05)
            if all(len(acked[sid]) > during[sid] for sid in sids):
                break
        stop.set()
        await asyncio.gather(*writers)

        assert promoted.port != victim.port
        for sid in sids:
            if sid in affected:
                assert len(acked[sid]) > during[sid], f"{sid} did not recover after the failover"
            else:
                assert failures[sid] == 0, f"{sid} on a healthy master failed {failures[sid]} times"
                assert during[sid] > before[sid], f"{sid} on a healthy master stalled during the failover"
            events = await manager.get_events(sid)
            seqs = [event.seq for event in events]
            assert seqs == list(range(1, len(seqs) + 1)), f"gap in {sid}"
            assert len(set(acked[sid])) == len(acked[sid])
        # The promoted replica got the scripts back on demand (NOSCRIPT reload) and serves every feature.
        assert (await manager.health_check()).status == "healthy"
        assert set(await manager.list_active_sessions()) == set(sids)
