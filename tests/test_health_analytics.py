"""Session analytics (get_stats) computed from what Redis holds: durations, workload, collaboration, fixes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable

from huddle import EmbeddedRedis, SessionManager

MakeManager = Callable[..., Awaitable[SessionManager]]


async def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``python -m huddle ARGS`` in a thread (the test's event loop keeps running)."""
    command = [sys.executable, "-m", "huddle", *args]
    return await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60
    )


def transition(etype: str, source: str, target: str) -> dict[str, object]:
    return {"type": etype, "state_transition": {"from": source, "to": target}}


async def test_time_from_broke_to_fixed_is_measured_from_the_event_log(manager: SessionManager) -> None:
    sid = await manager.create_session("dev")
    await manager.emit_event(sid, transition("broke", "working", "broken"), "dev")
    await manager.emit_event(sid, {"type": "modified"}, "dev")
    await manager.emit_event(sid, transition("fixed", "broken", "working"), "dev")
    events = await manager.get_events(sid)
    broke_at = next(e.timestamp for e in events if e.type == "broke")
    fixed_at = next(e.timestamp for e in events if e.type == "fixed")
    stats = await manager.get_stats()
    assert stats.time_to_fix_seconds.count == 1
    assert stats.time_to_fix_seconds.max == round((fixed_at - broke_at).total_seconds(), 6)
    assert stats.broken_sessions == 0


async def test_a_session_still_broken_counts_as_broken_and_not_as_fixed(manager: SessionManager) -> None:
    sid = await manager.create_session("dev")
    await manager.emit_event(sid, transition("broke", "working", "broken"), "dev")
    stats = await manager.get_stats()
    assert stats.broken_sessions == 1 and stats.time_to_fix_seconds.count == 0


async def test_workload_collaboration_and_handoffs(manager: SessionManager) -> None:
    first = await manager.create_session("alice")
    await manager.join_session(first, "bob")
    second = await manager.create_session("alice")
    await manager.join_session(second, "bob")
    await manager.join_session(second, "carol")
    for _ in range(3):
        await manager.emit_event(first, {"type": "modified"}, "alice")
    await manager.emit_event(first, {"type": "handoff", "data": {"to_agent": "bob"}}, "alice")
    await manager.emit_event(first, {"type": "modified"}, "bob")
    stats = await manager.get_stats()
    assert stats.active_sessions == 2 and stats.distinct_agents == 3
    assert stats.agent_workload[0].agent_id == "alice" and stats.agent_workload[0].events == 4
    assert {w.agent_id: w.sessions for w in stats.agent_workload} == {"alice": 2, "bob": 2, "carol": 1}
    assert stats.collaboration_pairs[0].agents == ("alice", "bob")
    assert stats.collaboration_pairs[0].shared_sessions == 2
    assert stats.handoff_count == 1
    assert (stats.handoffs[0].from_agent, stats.handoffs[0].to_agent) == ("alice", "bob")
    assert stats.actor_switches == 1  # alice ... alice (handoff) -> bob
    assert stats.event_types["modified"] == 4 and stats.event_types["join"] == 3
    assert stats.sessions_created_last_hour == 2


async def test_events_per_session_and_age_distributions(manager: SessionManager) -> None:
    small = await manager.create_session("a")
    big = await manager.create_session("b")
    for _ in range(9):
        await manager.emit_event(big, {"type": "modified"}, "b")
    await manager.emit_event(small, {"type": "modified"}, "a")
    stats = await manager.get_stats()
    last_seqs = sorted(
        [(await manager.get_session(small)).last_seq, (await manager.get_session(big)).last_seq]
    )
    assert stats.events_per_session.count == 2
    assert (stats.events_per_session.min, stats.events_per_session.max) == tuple(float(s) for s in last_seqs)
    assert stats.session_age_seconds.count == 2 and stats.session_age_seconds.min is not None
    assert stats.session_age_seconds.min >= 0


async def test_stats_without_event_scan_skip_the_logs(manager: SessionManager) -> None:
    sid = await manager.create_session("a")
    await manager.emit_event(sid, {"type": "modified"}, "a")
    stats = await manager.get_stats(scan_events=False)
    assert stats.active_sessions == 1 and stats.events_scanned == 0 and stats.event_types == {}


async def test_stats_command_prints_the_statistics_as_json(
    manager: SessionManager, redis_server: EmbeddedRedis
) -> None:
    sid = await manager.create_session("alice")
    await manager.emit_event(sid, {"type": "modified"}, "alice")
    env = {**os.environ, "HUDDLE_REDIS_URL": redis_server.url, "HUDDLE_NAMESPACE": manager.config.namespace}
    done = await run_cli(["stats", "--json"], env)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["active_sessions"] == 1 and printed["event_types"]["modified"] == 1
    assert printed["agent_workload"][0]["agent_id"] == "alice"


async def test_stats_command_renders_tables(manager: SessionManager, redis_server: EmbeddedRedis) -> None:
    await manager.create_session("alice")
    env = {**os.environ, "HUDDLE_REDIS_URL": redis_server.url, "HUDDLE_NAMESPACE": manager.config.namespace}
    done = await run_cli(["stats"], env)
    assert done.returncode == 0, done.stderr
    assert "active sessions" in done.stdout and "Agent workload" in done.stdout
