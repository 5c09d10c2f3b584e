"""SessionManager behaviour through the public API against a real redis-server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from huddle import (
    CheckpointNotFoundError,
    EventType,
    SequenceConflictError,
    SessionCompletedError,
    SessionExistsError,
    SessionExpiredError,
    SessionManager,
    SessionManagerConfig,
    SessionNotFoundError,
    StateConflictError,
)

MODIFIED = {
    "type": "modified",
    "change_info": {"element_type": "function", "entity_ids": ["f1"], "operation": "modified"},
}
BROKE = {
    "type": "broke",
    "state_transition": {"from": "working", "to": "broken", "verified_by": "ci", "confidence": 0.9},
}
FIXED = {"type": "fixed", "state_transition": {"from": "broken", "to": "working"}}

MakeManager = Callable[..., Awaitable[SessionManager]]


async def test_lifecycle_events_and_emits_get_consecutive_seqs(manager: SessionManager) -> None:
    sid = await manager.create_session("a1", metadata={"feature": "auth"})
    assert await manager.join_session(sid, "a2") is True
    seqs = [await manager.emit_event(sid, MODIFIED, "a1") for _ in range(3)]
    assert await manager.leave_session(sid, "a2") is True
    events = await manager.get_events(sid)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.type for e in events] == ["start", "join", "modified", "modified", "modified", "leave"]
    assert seqs == [3, 4, 5]
    assert [e.actor for e in events] == ["a1", "a2", "a1", "a1", "a1", "a2"]
    document = await manager.get_session(sid)
    assert document.metadata == {"feature": "auth"}
    assert set(document.agents) == {"a1"}
    assert document.last_seq == 6


async def test_server_clock_orders_event_timestamps(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    for _ in range(5):
        await manager.emit_event(sid, MODIFIED, "a1")
    stamps = [e.timestamp for e in await manager.get_events(sid)]
    assert stamps == sorted(stamps)
    server_seconds, _ = await manager.client.time()
    assert abs(stamps[-1].timestamp() - server_seconds) < 5


async def test_camel_case_event_from_another_language_validates(manager: SessionManager) -> None:
    sid = await manager.create_session("frontend-agent")
    seq = await manager.emit_event(
        sid,
        {
            "type": "broke",
            "id": "ignored-client-id",
            "timestamp": 123,
            "changeInfo": {"elementType": "test", "entityIds": ["auth.test.ts"], "operation": "failed"},
            "stateTransition": {
                "from": "working",
                "to": "broken",
                "verifiedBy": "test-suite",
                "confidence": 0.95,
            },
        },
        "frontend-agent",
    )
    (event,) = await manager.get_events(sid, seq, seq)
    assert event.change_info is not None and event.change_info.entity_ids == ["auth.test.ts"]
    assert event.state_transition is not None
    assert (event.state_transition.from_state, event.state_transition.to) == ("working", "broken")
    assert event.state_transition.verified_by == "test-suite"
    assert event.timestamp.year >= 2024  # the server's clock, not the client's 123


async def test_idempotent_retry_returns_first_seq_and_writes_once(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    first = await manager.emit_event(sid, MODIFIED, "a1", idempotency_key="op-42")
    again = await manager.emit_event(sid, MODIFIED, "a1", idempotency_key="op-42")
    assert first == again
    assert [e.seq for e in await manager.get_events(sid)] == [1, first]


async def test_expected_seq_mismatch_raises_and_writes_nothing(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    assert await manager.emit_event(sid, MODIFIED, "a1", expected_seq=1) == 2
    before = await manager.get_session(sid)
    with pytest.raises(SequenceConflictError) as info:
        await manager.emit_event(sid, MODIFIED, "a1", expected_seq=1)
    assert info.value.details["current_seq"] == 2
    after = await manager.get_session(sid)
    assert after.version == before.version and after.last_seq == 2


async def test_illegal_transition_raises_and_writes_nothing(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    with pytest.raises(StateConflictError) as info:
        await manager.emit_event(sid, FIXED, "a1")
    assert info.value.details["current_state"] == "working"
    document = await manager.get_session(sid)
    assert (document.state, document.last_seq, document.version) == ("working", 1, 1)
    await manager.emit_event(sid, BROKE, "a1")
    await manager.emit_event(sid, FIXED, "a1")
    assert (await manager.get_session(sid)).state == "working"


async def test_non_member_cannot_emit(manager: SessionManager) -> None:
    from huddle import NotAMemberError

    sid = await manager.create_session("a1")
    with pytest.raises(NotAMemberError):
        await manager.emit_event(sid, MODIFIED, "stranger")
    assert (await manager.get_session(sid)).last_seq == 1


async def test_join_twice_and_leave_twice_are_harmless(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    assert await manager.join_session(sid, "a2") is True
    assert await manager.join_session(sid, "a2") is False
    assert await manager.leave_session(sid, "a2") is True
    assert await manager.leave_session(sid, "a2") is False
    assert [e.type for e in await manager.get_events(sid)] == ["start", "join", "leave"]


async def test_creating_an_existing_session_id_is_refused(manager: SessionManager) -> None:
    await manager.create_session("a1", session_id="fixed-id")
    with pytest.raises(SessionExistsError):
        await manager.create_session("a2", session_id="fixed-id")
    assert set((await manager.get_session("fixed-id")).agents) == {"a1"}


async def test_auto_checkpoint_every_interval_events(make_manager: MakeManager) -> None:
    manager = await make_manager(checkpoint_interval=5)
    sid = await manager.create_session("a1")
    for _ in range(12):
        await manager.emit_event(sid, MODIFIED, "a1")
    checkpoints = await manager.get_checkpoints(sid)
    assert len(checkpoints) == 2
    assert all(cp.reason == "auto" for cp in checkpoints)
    events = await manager.get_events(sid)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    cp_events = [e for e in events if e.type == EventType.CHECKPOINT]
    assert [f"cp-{e.seq}" for e in cp_events] == [cp.checkpoint_id for cp in reversed(checkpoints)]
    assert [e.seq for e in cp_events] == [7, 13]  # after every 5 emitted events
    assert (await manager.get_session(sid)).last_checkpoint_id == checkpoints[0].checkpoint_id


async def test_auto_checkpoint_can_be_skipped_per_event(make_manager: MakeManager) -> None:
    manager = await make_manager(checkpoint_interval=2)
    sid = await manager.create_session("a1")
    for _ in range(6):
        await manager.emit_event(sid, MODIFIED, "a1", auto_checkpoint=False)
    assert await manager.get_checkpoints(sid) == []


async def test_manual_checkpoint_is_reused_until_something_happens(manager: SessionManager) -> None:
    sid = await manager.create_session("a1", metadata={"k": "v"})
    await manager.emit_event(sid, BROKE, "a1", auto_checkpoint=False)
    cp = await manager.checkpoint(sid)
    assert await manager.checkpoint(sid) == cp
    forced = await manager.checkpoint(sid, force_snapshot=True)
    assert forced != cp
    stored = await manager.get_checkpoint(sid, cp)
    assert (stored.state, stored.agents, stored.metadata, stored.reason) == (
        "broken",
        ["a1"],
        {"k": "v"},
        "manual",
    )
    with pytest.raises(CheckpointNotFoundError):
        await manager.get_checkpoint(sid, "cp-999")


async def test_checkpoint_with_grace_ttl_shortens_lifetime_but_keeps_session(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    await manager.checkpoint(sid, grace_ttl=120)
    document = await manager.get_session(sid)
    assert document.expires_in is not None and 100 < document.expires_in <= 120
    assert document.in_grace
    await manager.emit_event(sid, MODIFIED, "a1")  # activity brings the full TTL back
    assert (await manager.get_session(sid)).expires_in > 3000  # type: ignore[operator]


async def test_trimming_keeps_max_events_and_a_checkpoint_covering_them(make_manager: MakeManager) -> None:
    manager = await make_manager(max_events_per_session=20, checkpoint_interval=1000)
    sid = await manager.create_session("a1")
    for _ in range(50):
        await manager.emit_event(sid, MODIFIED, "a1", idempotency_key=None)
    document = await manager.get_session(sid)
    events = await manager.get_events(sid)
    assert len(events) == 20
    assert events[0].seq == document.first_seq and events[-1].seq == document.last_seq
    assert document.last_checkpoint_seq >= document.first_seq - 1
    idem_size = await manager.client.hlen(manager.keys.session(sid).idem)
    assert idem_size <= 20  # tokens of trimmed events are dropped with them


async def test_failure_snapshot_is_taken_and_outlives_the_session(manager: SessionManager) -> None:
    sid = await manager.create_session("a1", metadata={"feature": "login"})
    await manager.emit_event(sid, MODIFIED, "a1")
    await manager.emit_event(sid, BROKE, "a1")
    refs = [ref for ref in await manager.list_failure_snapshots() if ref.session_id == sid]
    assert len(refs) == 1
    keys = manager.keys.session(sid)
    await manager.client.delete(keys.meta, keys.events, keys.agents, keys.checkpoints, keys.idem)
    snapshot = await manager.get_failure_snapshot(sid, refs[0].snapshot_id)
    assert snapshot is not None
    assert snapshot.state == "broken" and snapshot.metadata == {"feature": "login"}
    assert [e.type for e in snapshot.events] == ["start", "modified", "broke"]
    assert 0 < await manager.client.ttl(keys.failures) <= manager.config.failure_snapshot_ttl


async def test_failure_snapshots_can_be_turned_off(make_manager: MakeManager) -> None:
    manager = await make_manager(enable_failure_snapshots=False)
    sid = await manager.create_session("a1")
    await manager.emit_event(sid, BROKE, "a1")
    assert await manager.list_failure_snapshots() == []
    assert (await manager.get_session(sid)).broken_since is not None


async def test_completed_session_refuses_events_and_enters_grace(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    await manager.complete_session(sid, "a1")
    with pytest.raises(SessionCompletedError):
        await manager.emit_event(sid, MODIFIED, "a1")
    document = await manager.get_session(sid)
    assert document.status == "completed" and document.in_grace
    assert document.expires_in is not None and document.expires_in <= manager.config.grace_ttl
    assert sid not in await manager.list_active_sessions()


async def test_expired_session_raises_session_expired(manager: SessionManager) -> None:
    sid = await manager.create_session("a1")
    keys = manager.keys.session(sid)
    await manager.client.delete(*keys.all)  # what the TTL does when it runs out
    with pytest.raises(SessionExpiredError):
        await manager.emit_event(sid, MODIFIED, "a1")
    with pytest.raises(SessionNotFoundError):
        await manager.get_session("never-existed")


async def test_listings_and_stats_come_from_the_indexes(manager: SessionManager) -> None:
    s1 = await manager.create_session("a1")
    s2 = await manager.create_session("a2")
    await manager.join_session(s2, "a1")
    await manager.emit_event(s2, BROKE, "a1")
    assert await manager.list_active_sessions() == [s2, s1]
    assert await manager.list_active_sessions(limit=1) == [s2]
    assert set(await manager.get_sessions_by_agent("a1")) == {s1, s2}
    await manager.leave_session(s2, "a1")
    assert await manager.get_sessions_by_agent("a1") == [s1]
    stats = await manager.get_stats()
    assert stats.active_sessions == 2
    assert stats.total_events == 1 + 4
    assert stats.sessions_by_state == {"working": 1, "broken": 1}
    assert stats.distinct_agents == 2 and stats.failure_snapshots == 1


async def test_maintenance_removes_index_entries_of_expired_sessions(manager: SessionManager) -> None:
    keep = await manager.create_session("a1")
    gone = await manager.create_session("a1")
    await manager.client.delete(*manager.keys.session(gone).all)
    report = await manager.perform_maintenance()
    assert report.removed_active_entries == 1
    assert report.removed_agent_entries == 1
    assert await manager.list_active_sessions() == [keep]
    assert await manager.client.zscore(manager.keys.active_index_for(gone), gone) is None


async def test_health_check_reports_a_reachable_redis(manager: SessionManager) -> None:
    await manager.create_session("a1")
    health = await manager.health_check()
    assert health.status == "healthy" and health.redis_reachable
    assert health.redis_version and health.scripts_loaded and health.active_sessions == 1
    assert health.latency_ms is not None and health.latency_ms > 0


async def test_from_env_reads_huddle_variables(
    monkeypatch: pytest.MonkeyPatch, make_config: Callable[..., SessionManagerConfig]
) -> None:
    config = make_config()
    monkeypatch.setenv("HUDDLE_REDIS_URL", config.redis_url or "")
    monkeypatch.setenv("HUDDLE_NAMESPACE", config.namespace)
    monkeypatch.setenv("HUDDLE_DEFAULT_TTL", "120")
    async with SessionManager.from_env() as manager:
        assert manager.config.default_ttl == 120
        sid = await manager.create_session("a1")
        assert 100 < ((await manager.get_session(sid)).expires_in or 0) <= 120


async def test_closed_manager_refuses_work(manager: SessionManager) -> None:
    from huddle import ShuttingDownError

    await manager.close()
    await manager.close()  # idempotent
    with pytest.raises(ShuttingDownError):
        await manager.create_session("a1")


async def test_draining_manager_refuses_new_sessions_and_events(manager: SessionManager) -> None:
    from huddle import ShuttingDownError

    sid = await manager.create_session("a1")
    manager.begin_draining()
    with pytest.raises(ShuttingDownError):
        await manager.emit_event(sid, MODIFIED, "a1")
    with pytest.raises(ShuttingDownError):
        await manager.create_session("a1")
    assert (await manager.checkpoint(sid)).startswith("cp-")


async def test_local_members_forget_completed_gone_and_expired_sessions(
    make_manager: Callable[..., Awaitable[SessionManager]],
) -> None:
    """``local_members`` (what a shutdown checkpoints) must not grow with every session a long-lived manager saw:
    an entry goes when the session completes, when a call finds it gone, and at maintenance once it completed
    elsewhere or expired."""
    manager, other = await make_manager(), await make_manager()
    done, gone, expired, elsewhere, live = [await manager.create_session("a1") for _ in range(5)]
    await manager.join_session(live, "a2")
    assert set(manager.local_members) == {done, gone, expired, elsewhere, live}

    await manager.complete_session(done, "a1")
    assert done not in manager.local_members

    keys = manager.keys.session(gone)
    await manager.client.delete(keys.meta, keys.events, keys.agents)  # as if it expired
    with pytest.raises(SessionNotFoundError):
        await manager.emit_event(gone, {"type": "modified"}, "a1")
    assert gone not in manager.local_members

    keys = manager.keys.session(expired)
    await manager.client.delete(keys.meta, keys.events, keys.agents)  # expired, and nobody called since
    await other.join_session(elsewhere, "b1")
    await other.complete_session(elsewhere, "b1")
    await manager.perform_maintenance()
    assert manager.local_members == {live: {"a1", "a2"}}
    await manager.leave_session(live, "a1")
    assert manager.local_members == {live: {"a2"}}


async def test_local_members_are_bounded(make_manager: Callable[..., Awaitable[SessionManager]]) -> None:
    manager = await make_manager(max_local_sessions=3)
    sids = [await manager.create_session("a1") for _ in range(5)]
    await manager.join_session(sids[2], "a2")  # joining again makes it the newest entry
    assert list(manager.local_members) == [sids[3], sids[4], sids[2]]
    assert manager.local_members.evicted == 2
