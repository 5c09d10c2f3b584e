"""The MCP tools, resources and prompt, through the SDK's in-process client (real Redis, fixed identity)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from mcp import Client
from mcp_support import call_error, call_ok

from huddle import SessionManager
from huddle.api.mcp import Caller, create_mcp_server


@asynccontextmanager
async def as_agent(
    manager: SessionManager, agent_id: str | None, role: str = "agent"
) -> AsyncIterator[Client]:
    caller = Caller(agent_id=agent_id, role=role)
    identify: Callable[[object], Caller] = lambda _ctx: caller  # noqa: E731
    async with Client(create_mcp_server(manager, identify)) as client:
        yield client


async def test_read_events_is_paged_and_resumes_at_last_seq(manager: SessionManager) -> None:
    async with as_agent(manager, "agent-a") as a:
        sid = (await call_ok(a, "create_session"))["session_id"]
        for i in range(11):
            await call_ok(a, "post_event", {"session_id": sid, "type": "modified", "data": {"i": i}})
        seen: list[int] = []
        after, pages = 0, 0
        while True:
            page = await call_ok(a, "read_events", {"session_id": sid, "after_seq": after, "limit": 5})
            assert len(page["events"]) <= 5
            seen += [e["seq"] for e in page["events"]]
            after, pages = page["last_seq"], pages + 1
            if not page["has_more"]:
                break
        stored = [e.seq for e in await manager.get_events(sid)]  # 12 posted + huddle's auto-checkpoint
        assert seen == stored == list(range(1, 14)) and pages == 3
        only = await call_ok(a, "read_events", {"session_id": sid, "types": ["start"]})
        assert [e["type"] for e in only["events"]] == ["start"] and only["last_seq"] == 13


async def test_wait_for_events_times_out_with_an_empty_list(manager: SessionManager) -> None:
    async with as_agent(manager, "agent-a") as a:
        sid = (await call_ok(a, "create_session"))["session_id"]
        reply = await call_ok(a, "wait_for_events", {"session_id": sid, "after_seq": 1, "timeout_s": 0.2})
        assert reply == {"events": [], "last_seq": 1, "has_more": False, "timed_out": True}


async def test_wait_for_events_skips_own_events_and_unwanted_types(manager: SessionManager) -> None:
    async with as_agent(manager, "agent-a") as a:
        sid = (await call_ok(a, "create_session"))["session_id"]
        await manager.join_session(sid, "agent-b")  # seq 2
        own = await call_ok(a, "post_event", {"session_id": sid, "type": "modified"})
        quiet = await call_ok(a, "wait_for_events", {"session_id": sid, "after_seq": 2, "timeout_s": 0.2})
        assert quiet["timed_out"] and quiet["events"] == [] and quiet["last_seq"] == own["seq"]
        await manager.emit_event(sid, {"type": "modified"}, "agent-b")
        passed = await manager.emit_event(sid, {"type": "test_pass"}, "agent-b")
        reply = await call_ok(
            a,
            "wait_for_events",
            {"session_id": sid, "after_seq": own["seq"], "types": ["test_pass"], "timeout_s": 5},
        )
        assert [(e["seq"], e["type"]) for e in reply["events"]] == [(passed, "test_pass")]


async def test_list_sessions_mine_and_all_are_paged(manager: SessionManager) -> None:
    mine = {await manager.create_session("agent-a") for _ in range(3)}
    other = await manager.create_session("agent-z")
    async with as_agent(manager, "agent-a") as a:
        first = await call_ok(a, "list_sessions", {"limit": 2})
        assert len(first["sessions"]) == 2 and first["next_offset"] == 2
        rest = await call_ok(a, "list_sessions", {"offset": 2, "limit": 2})
        assert rest["next_offset"] is None
        assert {s["session_id"] for s in first["sessions"] + rest["sessions"]} == mine
        everything = await call_ok(a, "list_sessions", {"scope": "all", "limit": 100})
        assert {s["session_id"] for s in everything["sessions"]} == mine | {other}
    async with as_agent(manager, None, "observer") as observer:
        code, _ = await call_error(observer, "list_sessions", {"scope": "mine"})
        assert code == "forbidden"


async def test_a_broken_session_shows_in_list_failures_and_can_be_completed(manager: SessionManager) -> None:
    async with as_agent(manager, "agent-a") as a:
        sid = (await call_ok(a, "create_session"))["session_id"]
        await call_ok(
            a,
            "post_event",
            {"session_id": sid, "type": "broke", "from_state": "working", "to_state": "broken"},
        )
        failures = await call_ok(a, "list_failures", {"session_id": sid})
        assert [f["session_id"] for f in failures["failures"]] == [sid]
        checkpoint = await call_ok(a, "checkpoint", {"session_id": sid, "reason": "before-fix"})
        assert checkpoint["checkpoint_id"].startswith("cp-")
        done = await call_ok(a, "complete_session", {"session_id": sid})
        doc = await call_ok(a, "get_session", {"session_id": sid})
        assert doc["status"] == "completed" and doc["last_seq"] == done["seq"]
        code, _ = await call_error(a, "post_event", {"session_id": sid, "type": "modified"})
        assert code == "session_completed"


async def test_session_and_timeline_resources_and_the_coordinate_prompt(manager: SessionManager) -> None:
    async with as_agent(manager, "agent-a") as a:
        sid = (await call_ok(a, "create_session"))["session_id"]
        await call_ok(
            a,
            "post_event",
            {"session_id": sid, "type": "modified", "element_type": "api_endpoint", "operation": "create",
             "entity_ids": ["POST /login"], "description": "login endpoint"},
        )  # fmt: skip
        templates = {t.uri_template for t in (await a.list_resource_templates()).resource_templates}
        assert templates == {"huddle://sessions/{session_id}", "huddle://sessions/{session_id}/timeline"}
        doc = await a.read_resource(f"huddle://sessions/{sid}")
        assert json.loads(doc.contents[0].text)["last_seq"] == 2  # type: ignore[union-attr]
        timeline = (await a.read_resource(f"huddle://sessions/{sid}/timeline")).contents[0].text  # type: ignore[union-attr]
        assert "#2 modified by agent-a create api_endpoint (POST /login): login endpoint" in timeline
        prompt = await a.get_prompt("coordinate", {"session_id": sid})
        text = prompt.messages[0].content.text  # type: ignore[union-attr]
        assert sid in text and "wait_for_events" in text and "handoff" in text


async def test_a_listened_session_announces_resource_updates_when_another_agent_writes(
    manager: SessionManager,
) -> None:
    async with as_agent(manager, "agent-a") as a:
        sid = (await call_ok(a, "create_session"))["session_id"]
        await manager.join_session(sid, "agent-b")
        document, timeline = f"huddle://sessions/{sid}", f"huddle://sessions/{sid}/timeline"
        async with a.listen(resource_subscriptions=[document, timeline]) as updates:
            await manager.emit_event(sid, {"type": "modified"}, "agent-b")
            announced: set[str] = set()
            async with asyncio.timeout(30):  # generous bound, not a timing claim
                async for event in updates:
                    announced.add(event.uri)  # type: ignore[union-attr]
                    if announced == {document, timeline}:
                        break
        timeline_text = (await a.read_resource(timeline)).contents[0].text  # type: ignore[union-attr]
        assert "modified by agent-b" in timeline_text


async def test_wait_for_events_on_a_completed_session_returns_at_once_without_timing_out(
    manager: SessionManager,
) -> None:
    async with as_agent(manager, "agent-a") as a:
        sid = (await call_ok(a, "create_session"))["session_id"]
        done = await call_ok(a, "complete_session", {"session_id": sid})
        reply = await call_ok(
            a, "wait_for_events", {"session_id": sid, "after_seq": done["seq"], "timeout_s": 60}
        )
        assert reply == {"events": [], "last_seq": done["seq"], "has_more": False, "timed_out": False}


async def test_a_retried_post_with_the_same_idempotency_key_writes_once(manager: SessionManager) -> None:
    async with as_agent(manager, "agent-a") as a:
        sid = (await call_ok(a, "create_session"))["session_id"]
        post = {"session_id": sid, "type": "modified", "idempotency_key": "edit-42"}
        first, again = await call_ok(a, "post_event", post), await call_ok(a, "post_event", post)
        assert first == again == {"seq": 2}
        assert [e.type for e in await manager.get_events(sid)] == ["start", "modified"]
