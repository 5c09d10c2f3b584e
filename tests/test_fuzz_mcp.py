"""MCP tool-argument fuzz: every call through the SDK's clients to the real server (a ``huddle mcp`` process
over stdio, and in-memory servers as another agent and as a read-only observer) returns a result or a tool
error carrying a huddle code; never an internal error, never a write under another agent's name, and a
refused call leaves every key of the namespace as it was.

``HUDDLE_FUZZ_MCP_EXAMPLES`` sets the number of calls (default 300; ``benchmarks/fuzz_mcp.py`` runs thousands)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from api_support import ApiServer, auth
from hypothesis import HealthCheck, given, settings
from mcp_fuzz_support import (
    McpDriver,
    Outcomes,
    RedisView,
    ToolCall,
    check_call,
    in_memory,
    outcome_of,
    over_http,
    seed,
    sendable,
    tool_calls,
    tool_schemas,
)
from mcp_support import stdio_agent

from huddle import EmbeddedRedis
from huddle.api.mcp import Caller

EXAMPLES = int(os.environ.get("HUDDLE_FUZZ_MCP_EXAMPLES", "300"))
OVER_HTTP = os.environ.get("HUDDLE_FUZZ_MCP_HTTP") == "1"
"""Also call through ``/mcp`` of a real ``huddle serve`` with an agent, an observer and an admin token."""
AGENT_OF = {"fuzz-a": "fuzz-a", "fuzz-c": "fuzz-c", "observer": None}
if OVER_HTTP:
    AGENT_OF |= {"http-alice": "alice", "http-observer": None, "http-admin": None}
"""Identity -> the agent its writes must be recorded under (None: may not write)."""


class Campaign:
    """The driver, a direct view of Redis and the outcomes so far."""

    def __init__(self, server: EmbeddedRedis) -> None:
        namespace = f"fzm{uuid.uuid4().hex[:8]}"

        def stdio(_manager: object) -> object:
            return stdio_agent("fuzz-a", server.url, namespace)

        clients = {
            "fuzz-a": stdio,
            "fuzz-c": in_memory(Caller(agent_id="fuzz-c")),
            "observer": in_memory(Caller(agent_id=None, role="observer")),
        }
        self.api: ApiServer | None = None
        if OVER_HTTP:
            self.api = ApiServer(server.url, namespace=namespace)
            for who in ("alice", "observer", "admin"):
                clients[f"http-{who}"] = over_http(f"{self.api.base}/mcp", auth(who))
        self.driver = McpDriver(server.url, namespace, clients)  # type: ignore[arg-type]
        assert self.driver.manager is not None
        manager = self.driver.manager
        self.driver.run(lambda: seed(manager))
        self.schemas = self.driver.run(lambda: tool_schemas(self.driver.clients["fuzz-a"]))
        self.view = RedisView(server.url, namespace)
        self.view.new_actors()  # the seeded events are not the fuzzed calls' doing
        self.outcomes = Outcomes()
        self.unsendable = 0

    def attempt(self, call: ToolCall) -> None:
        """Make one call and check it."""
        if not sendable(call.arguments):
            self.unsendable += 1  # a lone surrogate: no client can encode it, the SDK refuses before sending
            return
        before = self.view.snapshot()
        result = self.driver.call(call.identity, call.tool, call.arguments)
        self.outcomes.per_route[(call.identity, call.tool, outcome_of(result))] += 1
        self.outcomes.violations += check_call(call, AGENT_OF[call.identity], result, before, self.view)


@pytest.fixture(scope="module")
def campaign(redis_server: EmbeddedRedis) -> Iterator[Campaign]:
    run = Campaign(redis_server)
    yield run
    run.view.close()
    run.driver.close()
    if run.api is not None:
        assert run.api.stop() == 0


def test_fuzzed_tool_calls_end_in_a_result_or_a_typed_tool_error(campaign: Campaign) -> None:
    @given(call=tool_calls(campaign.schemas, tuple(AGENT_OF)))
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    def fuzz(call: ToolCall) -> None:
        campaign.attempt(call)

    fuzz()
    print(campaign.outcomes.summary(), f"unsendable {campaign.unsendable}")
    assert not campaign.outcomes.violations, "\n".join(campaign.outcomes.violations[:30])
    assert campaign.outcomes.calls >= EXAMPLES // 2  # the calls really went out
    # Both sides of the contract were reached: accepted writes and refusals of several kinds.
    results = {outcome for (_, _, outcome) in campaign.outcomes.per_route}
    assert {"ok", "error:invalid_request", "error:forbidden", "error:session_not_found"} <= results, results
    # The stdio server survived everything: it still answers.
    assert campaign.driver.call("fuzz-a", "list_sessions", {"limit": 1}).is_error is False  # type: ignore[attr-defined]
