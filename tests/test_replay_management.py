"""Managing recordings: get, list (index, newest first), delete, cleanup, stats, retention."""

from __future__ import annotations

import pytest

from huddle import ReplayConfig, ReplayError, SessionManager, SessionReplay
from huddle.backend.connection import create_client


async def record(manager: SessionManager, replay: SessionReplay, events: int = 5) -> str:
    sid = await manager.create_session("a1", record=True, metadata={"purpose": "test"})
    for n in range(events):
        await manager.emit_event(
            sid,
            {
                "type": "modified",
                "change_info": {"element_type": "file", "entity_ids": [f"f{n}"], "operation": "e"},
            },
            "a1",
        )
    return await replay.stop_recording(sid)


async def test_get_replay_describes_a_finished_recording(manager: SessionManager) -> None:
    async with SessionReplay(manager) as replay:
        replay_id = await record(manager, replay)
        info = await replay.get_replay(replay_id)
        assert await replay.get_replay("rp-none") is None
    assert info is not None
    assert (info.status, info.stop_reason, info.first_seq, info.frames) == (
        "complete",
        "stopped",
        1,
        info.last_seq,
    )
    assert (
        info.metadata == {"purpose": "test"} and info.stored_bytes > 0 and info.raw_bytes > info.stored_bytes
    )


async def test_list_replays_pages_newest_first(manager: SessionManager) -> None:
    async with SessionReplay(manager) as replay:
        ids = [await record(manager, replay, 1) for _ in range(5)]
        first = await replay.list_replays(limit=2)
        second = await replay.list_replays(limit=2, offset=2)
        rest = await replay.list_replays(limit=10, offset=4)
    assert [r.replay_id for r in first + second + rest] == list(reversed(ids))


async def test_list_replays_drops_index_entries_of_expired_recordings(manager: SessionManager) -> None:
    async with SessionReplay(manager) as replay:
        kept, expired = await record(manager, replay, 1), await record(manager, replay, 1)
        client = create_client(manager.config)
        await client.delete(*(manager.keys.replay(expired, part) for part in ("meta", "segments", "segidx")))
        listed = [r.replay_id for r in await replay.list_replays()]
        remaining = await client.zcard(manager.keys.replay_index_for(expired))
        await client.aclose()
    assert listed == [kept]
    assert remaining == (
        1 if manager.keys.replay_index_for(kept) == manager.keys.replay_index_for(expired) else 0
    )


async def test_delete_replay_removes_it_and_reports_whether_it_existed(manager: SessionManager) -> None:
    async with SessionReplay(manager) as replay:
        replay_id = await record(manager, replay)
        assert await replay.delete_replay(replay_id) is True
        assert await replay.delete_replay(replay_id) is False
        assert await replay.get_replay(replay_id) is None
        assert await replay.list_replays() == []


async def test_cleanup_deletes_only_recordings_older_than_the_cutoff(manager: SessionManager) -> None:
    async with SessionReplay(manager) as replay:
        old, new = await record(manager, replay, 1), await record(manager, replay, 1)
        client = create_client(manager.config)
        ten_days_ago = (await client.time())[0] * 1000 - 10 * 86_400_000
        await client.zadd(manager.keys.replay_index_for(old), {old: ten_days_ago})
        await client.aclose()
        assert await replay.cleanup_old_replays(7) == 1
        assert await replay.cleanup_old_replays(7) == 0
        assert [r.replay_id for r in await replay.list_replays()] == [new]


async def test_stats_report_measured_raw_and_stored_bytes(manager: SessionManager) -> None:
    async with SessionReplay(manager) as replay:
        ids = [await record(manager, replay, 30) for _ in range(2)]
        infos = [await replay.get_replay(replay_id) for replay_id in ids]
        stats = await replay.get_replay_stats()
    assert stats.total_replays == 2 and stats.recording == 0
    assert stats.raw_bytes == sum(i.raw_bytes for i in infos if i)
    assert stats.stored_bytes == sum(i.stored_bytes for i in infos if i)
    assert stats.total_frames == sum(i.frames for i in infos if i)
    assert 0 < stats.storage_reduction < 1


async def test_stored_bytes_equal_the_bytes_of_the_blocks_in_redis(manager: SessionManager) -> None:
    async with SessionReplay(manager, ReplayConfig(snapshot_every_frames=7)) as replay:
        replay_id = await record(manager, replay, 40)
        info = await replay.get_replay(replay_id)
    client = create_client(manager.config, decode_responses=False)
    blocks = await client.lrange(manager.keys.replay(replay_id, "segments"), 0, -1)
    await client.aclose()
    assert info is not None and info.stored_bytes == sum(len(b) for b in blocks)
    assert info.segments == len(blocks) == -(-info.frames // 7)


async def test_recordings_outlive_the_session_with_their_own_retention(manager: SessionManager) -> None:
    async with SessionReplay(manager, ReplayConfig(retention_days=2)) as replay:
        replay_id = await record(manager, replay)
        info = await replay.get_replay(replay_id)
        assert info is not None
        client = create_client(manager.config)
        await client.delete(*manager.keys.session(info.session_id).all)  # the session is gone
        ttl = await client.pttl(manager.keys.replay(replay_id, "segments"))
        await client.aclose()
        assert 86_400_000 < ttl <= 2 * 86_400_000
        assert (await replay.verify_replay(replay_id)).ok


async def test_bad_management_arguments_raise_typed_errors(manager: SessionManager) -> None:
    async with SessionReplay(manager) as replay:
        with pytest.raises(ReplayError):
            await replay.list_replays(limit=0)
        with pytest.raises(ReplayError):
            await replay.cleanup_old_replays(-1)
