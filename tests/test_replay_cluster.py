"""Session replay on a real local Redis Cluster: recording, playback, verify, listing, export/import."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from huddle import ReplayConfig, ReplayOptions, SessionManager, SessionManagerConfig, SessionReplay
from huddle.backend.topology import EmbeddedCluster

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(masters=3, replicas=0) as local:
        yield local


@pytest.fixture
async def manager(cluster: EmbeddedCluster) -> AsyncIterator[SessionManager]:
    config = SessionManagerConfig(
        redis_url=cluster.url,
        namespace=f"t{uuid.uuid4().hex[:10]}",
        max_events_per_session=20,  # trims
    )
    async with SessionManager(config) as built:
        yield built


async def test_recordings_work_unchanged_on_a_cluster(manager: SessionManager) -> None:
    async with SessionReplay(manager, ReplayConfig(snapshot_every_frames=16)) as replay:
        ids = []
        for _ in range(4):  # sessions and recordings land on different masters
            sid = await manager.create_session("a1", record=True)
            for n in range(60):
                await manager.emit_event(sid, {"type": "modified", "data": {"n": n}}, "a1")
            ids.append(await replay.stop_recording(sid))
        for replay_id in ids:
            assert (await replay.verify_replay(replay_id)).ok
            frames = await replay.frames(await replay.start_replay(replay_id, ReplayOptions(speed=0)))
            info = await replay.get_replay(replay_id)
            assert info is not None and [f.seq for f in frames] == list(range(1, info.last_seq + 1))
        assert [r.replay_id for r in await replay.list_replays()] == list(reversed(ids))
        lines = [line async for line in replay.export_replay(ids[0])]
        copy = await replay.import_replay(lines, replay_id="rp-cluster-copy")
        assert (await replay.verify_replay(copy)).ok
        stats = await replay.get_replay_stats()
        assert stats.total_replays == 5 and stats.stored_bytes < stats.raw_bytes
