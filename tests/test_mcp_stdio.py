"""``huddle mcp`` over stdio, driven by the mcp SDK's own client: two agents share a session through it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from mcp import Client
from mcp_support import CONTRACT_TOOLS, call_error, call_ok, stdio_agent, stdio_params, until_blocked_in_xread

from huddle import EmbeddedRedis, SessionManager


async def test_two_agents_share_a_session_wait_for_each_other_and_hand_off(
    redis_server: EmbeddedRedis, namespace: str, manager: SessionManager
) -> None:
    async with (
        stdio_agent("agent-a", redis_server.url, namespace) as a,
        stdio_agent("agent-b", redis_server.url, namespace, mode="legacy") as b,
    ):
        assert a.protocol_version != b.protocol_version  # both protocol eras are served
        listed = await a.list_tools()
        tools = {tool.name: tool for tool in listed.tools}
        assert set(tools) == CONTRACT_TOOLS
        for tool in tools.values():
            assert tool.input_schema["type"] == "object"
            assert tool.output_schema is not None and tool.output_schema["type"] == "object"
            assert tool.description
        post = tools["post_event"].input_schema
        assert {"session_id", "type", "entity_ids", "element_type", "operation", "description"} <= set(
            post["properties"]
        )
        assert set(post["required"]) == {"session_id", "type"}
        assert {"session_id", "after_seq", "timeout_s"} <= set(
            tools["wait_for_events"].input_schema["properties"]
        )
        assert {"session_id", "to_agent", "note"} <= set(tools["handoff"].input_schema["properties"])

        sid = (await call_ok(a, "create_session", {"metadata": {"feature": "login"}}))["session_id"]
        first = await call_ok(
            a,
            "post_event",
            {"session_id": sid, "type": "modified", "element_type": "api_endpoint", "operation": "create",
             "entity_ids": ["POST /login"], "description": "login endpoint"},
        )  # fmt: skip
        assert first == {"seq": 2}
        joined = await call_ok(b, "join_session", {"session_id": sid})
        assert joined["joined"] is True and joined["last_seq"] == 3

        # B waits after everything it has seen; A's next post must wake it (generous bound, no timing claim).
        waiting = asyncio.create_task(
            call_ok(
                b, "wait_for_events", {"session_id": sid, "after_seq": joined["last_seq"], "timeout_s": 60}
            )
        )
        await until_blocked_in_xread(redis_server.url)  # B is past the stored events, in its live read
        broke = await call_ok(
            a,
            "post_event",
            {"session_id": sid, "type": "broke", "from_state": "working", "to_state": "broken", "confidence": 0.9,
             "description": "login returns 500"},
        )  # fmt: skip
        woken = await asyncio.wait_for(waiting, timeout=45)
        assert woken["timed_out"] is False
        assert [(e["seq"], e["type"], e["actor"]) for e in woken["events"]] == [
            (broke["seq"], "broke", "agent-a")
        ]
        assert woken["events"][0]["state_transition"] == {
            "from_state": "working",
            "to": "broken",
            "confidence": 0.9,
        }
        assert woken["last_seq"] == broke["seq"]

        handed = await call_ok(b, "handoff", {"session_id": sid, "to_agent": "agent-a", "note": "your turn"})
        got = await call_ok(
            a, "wait_for_events", {"session_id": sid, "after_seq": broke["seq"], "timeout_s": 30}
        )
        assert [(e["type"], e["actor"], e["data"]) for e in got["events"]] == [
            ("handoff", "agent-b", {"to_agent": "agent-a", "note": "your turn"})
        ]
        assert got["events"][0]["seq"] == handed["seq"]

        page = await call_ok(a, "read_events", {"session_id": sid, "after_seq": 0, "limit": 200})
        stored = await manager.get_events(sid)
        assert [e["seq"] for e in page["events"]] == list(range(1, len(stored) + 1))
        assert [(e["seq"], e["type"], e["actor"]) for e in page["events"]] == [
            (e.seq, e.type, e.actor) for e in stored
        ]
        assert [e.actor for e in stored] == ["agent-a", "agent-a", "agent-b", "agent-a", "agent-b"]
        doc = await call_ok(b, "get_session", {"session_id": sid})
        assert doc["state"] == "broken" and set(doc["agents"]) == {"agent-a", "agent-b"}


async def test_no_tool_lets_an_agent_act_as_another(
    redis_server: EmbeddedRedis, namespace: str, manager: SessionManager
) -> None:
    async with stdio_agent("agent-a", redis_server.url, namespace) as a:
        listed = await a.list_tools()
        for tool in listed.tools:
            names = set(tool.input_schema.get("properties", {}))
            assert not names & {"actor", "agent_id", "agent", "as_agent", "from_agent"}, tool.name
        sid = (await call_ok(a, "create_session"))["session_id"]
        await manager.join_session(sid, "agent-b")
        # An argument naming another agent is not part of any schema: it is ignored, never obeyed.
        await call_ok(a, "post_event", {"session_id": sid, "type": "modified", "actor": "agent-b"})
        await call_ok(
            a, "handoff", {"session_id": sid, "to_agent": "agent-b", "note": "n", "actor": "agent-b"}
        )
        await call_ok(a, "checkpoint", {"session_id": sid, "actor": "agent-b"})
        await call_ok(a, "leave_session", {"session_id": sid, "agent_id": "agent-b"})
        written = [e for e in await manager.get_events(sid) if e.type not in ("start", "join")]
        assert [(e.type, e.actor) for e in written] == [
            ("modified", "agent-a"), ("handoff", "agent-a"), ("checkpoint", "agent-a"), ("leave", "agent-a")
        ]  # fmt: skip
        assert set((await manager.get_session(sid)).agents) == {"agent-b"}  # B was not made to leave


async def test_errors_are_tool_errors_with_codes_and_the_server_keeps_serving(
    redis_server: EmbeddedRedis, namespace: str, manager: SessionManager
) -> None:
    sid = await manager.create_session("owner")
    async with stdio_agent("outsider", redis_server.url, namespace) as c:
        code, text = await call_error(c, "get_session", {"session_id": "no-such-session"})
        assert code == "session_not_found" and text.startswith("session_not_found: ")
        code, _ = await call_error(c, "post_event", {"session_id": sid, "type": "modified"})
        assert code == "not_a_member"
        await call_ok(c, "join_session", {"session_id": sid})
        code, _ = await call_error(
            c,
            "post_event",
            {"session_id": sid, "type": "fixed", "from_state": "broken", "to_state": "working"},
        )
        assert code == "state_conflict"
        code, _ = await call_error(c, "post_event", {"session_id": sid, "type": "bad type!"})
        assert code == "invalid_event"
        # Refused by the input schema before any huddle code runs.
        refused = await c.call_tool("wait_for_events", {"session_id": sid, "after_seq": 0, "timeout_s": 600})
        assert refused.is_error
        refused = await c.call_tool("read_events", {"session_id": sid, "limit": 100_000})
        assert refused.is_error
        assert [e.type for e in await manager.get_events(sid)] == [
            "start",
            "join",
        ]  # nothing written by failures
        assert (await call_ok(c, "post_event", {"session_id": sid, "type": "modified"}))["seq"] == 3


async def test_the_agent_id_can_come_from_huddle_agent_id(
    redis_server: EmbeddedRedis, namespace: str, manager: SessionManager
) -> None:
    params = stdio_params("ignored", redis_server.url, namespace, HUDDLE_AGENT_ID="env-agent")
    params.args = ["-m", "huddle", "mcp"]  # no --agent-id: the environment names the agent
    async with Client(params, read_timeout_seconds=60) as agent:
        sid = (await call_ok(agent, "create_session"))["session_id"]
    assert (await manager.get_session(sid)).creator == "env-agent"


@pytest.fixture
def restartable_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(appendonly=True).start()  # fixed port across restarts, data kept (AOF)
    yield server
    server.stop()


async def test_redis_restart_fails_one_call_cleanly_and_the_next_succeeds(
    restartable_redis: EmbeddedRedis, namespace: str
) -> None:
    env = {"HUDDLE_RETRY_ATTEMPTS": "1", "HUDDLE_RETRY_BACKOFF_BASE": "0.01"}
    async with stdio_agent("agent-a", restartable_redis.url, namespace, **env) as a:
        sid = (await call_ok(a, "create_session"))["session_id"]
        await call_ok(a, "post_event", {"session_id": sid, "type": "modified"})
        await asyncio.to_thread(restartable_redis.stop, kill=True, cleanup=False)
        code, _ = await call_error(a, "post_event", {"session_id": sid, "type": "modified"})
        assert code == "redis_unavailable"
        await asyncio.to_thread(restartable_redis.start)
        assert (await call_ok(a, "post_event", {"session_id": sid, "type": "modified"}))["seq"] == 3
        assert (await call_ok(a, "get_session", {"session_id": sid}))["last_seq"] == 3

        # Redis going away under a blocked wait: the wait ends by its timeout, the server lives on.
        waiting = asyncio.create_task(
            call_ok(a, "wait_for_events", {"session_id": sid, "after_seq": 3, "timeout_s": 3})
        )
        await until_blocked_in_xread(restartable_redis.url)
        await asyncio.to_thread(restartable_redis.stop, kill=True, cleanup=False)
        assert (await asyncio.wait_for(waiting, timeout=30))["timed_out"] is True
        await asyncio.to_thread(restartable_redis.start)
        assert (await call_ok(a, "post_event", {"session_id": sid, "type": "modified"}))["seq"] == 4
