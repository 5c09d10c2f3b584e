"""MCP tool-argument fuzzing: argument strategies from each tool's input schema plus hostile mutations, a
driver holding real MCP clients open for Hypothesis, and the checks every call must pass."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import redis
from hypothesis import strategies as st
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ReadResourceResult

from huddle import SessionManager, SessionManagerConfig, errors
from huddle.api.mcp import Caller, create_mcp_server

SYSTEM_ACTOR = "huddle"
AGENTS = ("fuzz-a", "fuzz-b", "fuzz-c")
"""fuzz-a and fuzz-c are callers; fuzz-b only exists in the seeded sessions (a name to impersonate)."""
SEEDED = ("fz-mine", "fz-other", "fz-shared", "fz-done")
BAD_IDS = ("", " ", "a b", "{x}", "x" * 129, "é", "ghost", "fz-mine\n", "../fz-mine", "null")
HUGE_TEXT = "h" * 200_000
HUGE_NUMBERS = (-1, -(2**63), 2**63, 2**64 + 1, 10**30, -(10**30), 1e308, -1e308, 1.5, 1e-300)
ODD_TEXT = ("\x00", "\ufeff", "\u202e", "😀" * 50, "\ud800", "\udfff", "a\u0000b", "\u00e9\u0301", "\\", "%s")
KNOWN_CODES = frozenset(
    {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.HuddleError)
    }
    | {"forbidden", "invalid_request", "not_found"}
)
"""HuddleError codes, plus the MCP door's own: ``forbidden`` (no agent identity), ``invalid_request``
(arguments outside the tool's input schema) and ``not_found`` (no such tool)."""
TOOL_NAMES = frozenset(
    {"create_session", "join_session", "leave_session", "list_sessions", "get_session", "post_event", "handoff",
     "read_events", "wait_for_events", "checkpoint", "complete_session", "list_failures"}
)  # fmt: skip
RESOURCE = "(read resource)"
"""Pseudo tool name of a ``resources/read`` call (resources answer errors as protocol errors, not tool results)."""
WRITE_TOOLS = frozenset(
    {
        "create_session",
        "join_session",
        "leave_session",
        "post_event",
        "handoff",
        "checkpoint",
        "complete_session",
    }
)

JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)  # fmt: skip
NAMES = st.sampled_from(["modified", "broke", "fixed", "test_pass", "working", "broken", "review", "x.y:z-1"])
TEXT = st.one_of(st.text(max_size=30), NAMES, st.sampled_from(ODD_TEXT))
SESSION_IDS = st.one_of(
    st.sampled_from(SEEDED),
    st.sampled_from(BAD_IDS),
    st.from_regex(r"fz-new-[a-z0-9]{1,6}", fullmatch=True),
    TEXT,
)


def _for_property(name: str, spec: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """A value the input schema accepts (session ids and names drawn from pools that hit real data)."""
    if "anyOf" in spec:
        return st.one_of([_for_property(name, option) for option in spec["anyOf"]])
    if "enum" in spec:
        return st.sampled_from(spec["enum"])
    kind = spec.get("type")
    if name == "session_id" and kind == "string":
        return SESSION_IDS
    if name == "to_agent":
        return st.sampled_from(AGENTS) | TEXT
    if name == "timeout_s":
        return st.sampled_from([0, 0.01, 0.05])  # a valid wait must not stall the campaign
    if kind == "string":
        return TEXT if "maxLength" not in spec else st.text(max_size=min(int(spec["maxLength"]), 60))
    if kind == "integer":
        low = int(spec.get("minimum", -5))
        return st.integers(low, int(spec.get("maximum", low + 60)))
    if kind == "number":
        bottom = float(spec.get("minimum", -5))
        return st.floats(bottom, float(spec.get("maximum", bottom + 60)), allow_nan=False)
    if kind == "array":
        return st.lists(_for_property(name + "[]", spec.get("items", {})), max_size=5)
    if kind == "object":
        return st.dictionaries(st.text(max_size=8), JSON, max_size=4)
    if kind == "null":
        return st.none()
    return JSON


def _wrong_type(spec: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    kinds = {option.get("type") for option in spec.get("anyOf", [spec])}
    pool: list[Any] = [None, True, 0, 3.5, "7", [], ["x"], {}, {"a": 1}, [{"b": None}]]
    return st.sampled_from(
        [
            v
            for v in pool
            if _json_kind(v) not in kinds and not (_json_kind(v) == "integer" and "number" in kinds)
        ]
    )


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


@dataclass(frozen=True)
class ToolCall:
    """One fuzzed call: who calls, which tool, with what, and how the arguments were made."""

    identity: str
    tool: str
    arguments: dict[str, Any]
    kind: str


def tool_calls(
    schemas: Mapping[str, Mapping[str, Any]], identities: tuple[str, ...]
) -> st.SearchStrategy[ToolCall]:
    """Calls of every tool: valid by its input schema, or mutated (wrong type, missing/extra fields, huge or odd
    strings, negative/huge numbers, other agents' names in actor-like fields), plus unknown tool names."""

    @st.composite
    def build(draw: st.DrawFn) -> ToolCall:
        identity = draw(st.sampled_from(identities))
        tool = draw(st.sampled_from(sorted(schemas)))
        schema = schemas[tool]
        props: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        arguments: dict[str, Any] = {}
        for name, spec in props.items():
            if name in required or name == "timeout_s" or draw(st.booleans()):
                arguments[name] = draw(_for_property(name, spec))
        kind = draw(
            st.sampled_from(["schema", "schema", "wrong_type", "missing", "extra", "huge", "numbers", "unicode",
                             "unknown_tool", "resource"])
        )  # fmt: skip
        if kind == "resource":
            sid = draw(SESSION_IDS | st.sampled_from([HUGE_TEXT[:5000], "%00", "a/b", "..", "?x=1"]))
            suffix = draw(st.sampled_from(["", "/timeline", "/other", "/timeline/x"]))
            scheme = draw(
                st.sampled_from(["huddle://sessions/", "huddle://sessions/", "huddle://", "file:///"])
            )
            return ToolCall(identity, RESOURCE, {"uri": f"{scheme}{sid}{suffix}"}, kind)
        if kind == "wrong_type" and props:
            name = draw(st.sampled_from(sorted(props)))
            arguments[name] = draw(_wrong_type(props[name]))
        elif kind == "missing" and required:
            arguments.pop(draw(st.sampled_from(sorted(required))))
        elif kind == "extra":
            for extra in draw(st.lists(st.sampled_from(["actor", "agent_id", "as_agent", "caller", "_meta", "x"]),
                                       min_size=1, max_size=3, unique=True)):  # fmt: skip
                arguments[extra] = draw(st.sampled_from(AGENTS) | JSON)
        elif kind == "huge" and props:
            name = draw(st.sampled_from(sorted(props)))
            arguments[name] = draw(
                st.sampled_from([HUGE_TEXT, [HUGE_TEXT[:1000]] * 300, {"k": HUGE_TEXT}, ["a"] * 20_000])
            )
        elif kind == "numbers" and props:
            numeric = [n for n, s in props.items() if {"integer", "number"} & _kinds(s)] or sorted(props)
            arguments[draw(st.sampled_from(numeric))] = draw(st.sampled_from(HUGE_NUMBERS))
        elif kind == "unicode" and props:
            arguments[draw(st.sampled_from(sorted(props)))] = draw(
                st.sampled_from(ODD_TEXT) | st.text(min_size=1)
            )
        elif kind == "unknown_tool":
            tool = draw(
                st.sampled_from(["", "post-event", "POST_EVENT", "delete_session", "x" * 300, "__init__"])
            )
        return ToolCall(identity, tool, arguments, kind)

    return build()


def _kinds(spec: Mapping[str, Any]) -> set[str]:
    return {str(option.get("type")) for option in spec.get("anyOf", [spec])}


def sendable(arguments: Mapping[str, Any]) -> bool:
    """Whether a real client can put ``arguments`` on the wire (lone surrogates cannot be UTF-8 encoded)."""
    try:
        json.dumps(arguments, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class Outcomes:
    """How the calls of one campaign ended, per (identity, tool) and overall; violations with the call."""

    per_route: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    @property
    def calls(self) -> int:
        """Calls made."""
        return sum(self.per_route.values())

    def summary(self) -> str:
        """Counts per outcome (for the docs table), then per tool."""
        outcome: Counter[str] = Counter()
        tools: Counter[str] = Counter()
        callers: Counter[str] = Counter()
        for (identity, tool, result), n in self.per_route.items():
            outcome[result] += n
            callers[identity] += n
            tools[tool if tool in TOOL_NAMES | {RESOURCE} else "(unknown tool)"] += n
        return (
            f"MCP tool calls: {self.calls}; per caller {dict(callers)}; outcomes {dict(outcome.most_common())}; "
            f"per tool {dict(sorted(tools.items()))}; "
            f"violations {len(self.violations)}"
        )


EXPIRING_MS = 60_000
"""Keys with less time to live than this are not compared: their expiry is Redis' doing, not the call's."""
READERS: dict[bytes, Callable[[Any, bytes], Any]] = {
    b"hash": lambda pipe, key: pipe.hgetall(key),
    b"stream": lambda pipe, key: pipe.xrange(key),
    b"zset": lambda pipe, key: pipe.zrange(key, 0, -1, withscores=True),
    b"set": lambda pipe, key: pipe.smembers(key),
    b"list": lambda pipe, key: pipe.lrange(key, 0, -1),
    b"string": lambda pipe, key: pipe.get(key),
}


def _dump(pipe: Any, key: bytes) -> Any:
    return pipe.dump(key)


def _comparable(value: Any) -> Any:
    return frozenset(value.items()) if isinstance(value, dict) else value


class RedisView:
    """Direct reads of the namespace: a snapshot of every key, and the actors of events appended since."""

    def __init__(self, url: str, namespace: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.namespace = namespace
        self.seen: dict[bytes, bytes] = {}
        self.ttls: dict[bytes, int] = {}
        """PTTL of every key at the last snapshot (to explain a difference)."""

    def snapshot(self) -> dict[bytes, object]:
        """Every key of the namespace with its content (not DUMP: a read may rehash a hash and reorder it),
        leaving out keys about to expire (a session created with a 1 s TTL may vanish during any call)."""
        keys = sorted(self.client.scan_iter(match=f"{self.namespace}:*", count=1000))
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.type(key)
            pipe.pttl(key)
        replies = pipe.execute()
        kinds = dict(zip(keys, replies[0::2], strict=True))
        self.ttls = dict(zip(keys, replies[1::2], strict=True))
        lasting = [k for k, ttl in self.ttls.items() if not 0 <= ttl <= EXPIRING_MS and kinds[k] != b"none"]
        for key in lasting:
            READERS.get(kinds[key], _dump)(pipe, key)
        values = [_comparable(v) for v in pipe.execute()]
        return {key: (kinds[key], value) for key, value in zip(lasting, values, strict=True)}

    def explain(self, before: dict[bytes, object], after: dict[bytes, object], ttls: dict[bytes, int]) -> str:
        """Which keys differ, each as gone / new / changed, with its PTTL before (ms; -1: none)."""
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        shown = [
            f"{k.decode(errors='replace')} "
            f"{'gone' if k not in after else 'new' if k not in before else 'changed'} (pttl {ttls.get(k)})"
            for k in changed[:6]
        ]
        return ", ".join(shown) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")

    def new_actors(self) -> list[str]:
        """Actors of every event appended to any session since the last call (and remember where we are)."""
        actors = []
        for key in self.client.scan_iter(match=f"{self.namespace}:{{*}}:events", count=1000):
            start = b"(" + self.seen[key] if key in self.seen else b"-"
            entries = self.client.xrange(key, min=start)
            for entry_id, fields in entries:
                actors.append(fields.get(b"a", b"?").decode(errors="replace"))
                self.seen[key] = entry_id
        return actors

    def close(self) -> None:
        self.client.close()


def check_call(
    call: ToolCall, agent: str | None, result: object, before: dict[bytes, object], view: RedisView
) -> list[str]:
    """What is wrong with one call's outcome: an untyped or code-less error, a refused call that wrote, a write
    under another name, a write by an identity that may not write."""
    problems = []
    label = f"{call.identity} {call.tool}({_short(call.arguments)}) [{call.kind}]"
    if call.tool == RESOURCE:
        return _check_resource(label, result, before, view)
    if not isinstance(result, CallToolResult):
        return [f"{label}: no tool result: {result!r}"[:400]]
    actors = view.new_actors()
    if result.is_error:
        body = result.structured_content or {}
        code = body.get("code")
        text = result.content[0].text if result.content and result.content[0].type == "text" else ""
        if code not in KNOWN_CODES:
            problems.append(f"{label}: error without a huddle code: {code!r} {text[:200]!r}")
        elif not text.startswith(f"{code}: "):
            problems.append(f"{label}: error text does not start with its code: {text[:200]!r}")
        if len(text) > 2_000:
            problems.append(f"{label}: error text of {len(text)} characters floods the caller")
        ttls = view.ttls
        after = view.snapshot()
        if after != before:
            problems.append(
                f"{label}: refused ({code}) but Redis changed: {view.explain(before, after, ttls)}"
            )
    wrong = [a for a in actors if a not in (agent, SYSTEM_ACTOR)]
    if wrong:
        problems.append(f"{label}: events written as {wrong} by {agent}")
    if actors and agent is None:
        problems.append(f"{label}: a read-only identity wrote {actors}")
    return problems


def _check_resource(label: str, result: object, before: dict[bytes, object], view: RedisView) -> list[str]:
    """A resource read returns contents, or a protocol error whose message starts with a huddle code (or says
    the URI matches no resource); it never writes."""
    problems = []
    if isinstance(result, MCPError):
        code = result.message.split(":", 1)[0]
        if code not in KNOWN_CODES and not result.message.startswith("Unknown resource"):
            problems.append(f"{label}: resource error without a huddle code: {result.message[:200]!r}")
        if len(result.message) > 2_000:
            problems.append(f"{label}: resource error of {len(result.message)} characters")
    elif not isinstance(result, ReadResourceResult):
        problems.append(f"{label}: no resource result: {result!r}"[:400])
    if view.new_actors() or view.snapshot() != before:
        problems.append(f"{label}: a resource read wrote to Redis")
    return problems


def outcome_of(result: object) -> str:
    """'ok', 'error:<code>', 'protocol-error:<code>' or 'no-result'."""
    if isinstance(result, ReadResourceResult):
        return "ok"
    if isinstance(result, MCPError):
        return f"protocol-error:{result.message.split(':', 1)[0][:40]}"
    if not isinstance(result, CallToolResult):
        return "no-result"
    if not result.is_error:
        return "ok"
    return f"error:{(result.structured_content or {}).get('code', '?')}"


def _short(arguments: Mapping[str, Any]) -> str:
    text = json.dumps(arguments, ensure_ascii=True, default=repr)
    return text if len(text) < 300 else text[:300] + f"...({len(text)} chars)"


ClientFactory = Callable[[SessionManager], AbstractAsyncContextManager[Client]]


def in_memory(caller: Caller) -> ClientFactory:
    """An SDK in-memory client of ``create_mcp_server`` on the driver's manager, acting as ``caller``."""

    @asynccontextmanager
    async def connect(manager: SessionManager) -> AsyncIterator[Client]:
        async with Client(create_mcp_server(manager, lambda _ctx: caller)) as client:
            yield client

    return connect


def over_http(url: str, headers: dict[str, str]) -> ClientFactory:
    """An SDK Streamable HTTP client of ``url`` (``/mcp`` of ``huddle serve``) sending ``headers``."""

    @asynccontextmanager
    async def connect(_manager: SessionManager) -> AsyncIterator[Client]:
        http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120))
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            yield client

    return connect


class McpDriver:
    """MCP clients held open on a loop in a background thread (the SDK's task groups stay in one task), so
    synchronous Hypothesis tests can make calls through them; also owns a manager for seeding."""

    def __init__(self, redis_url: str, namespace: str, clients: Mapping[str, ClientFactory]) -> None:
        self.config = SessionManagerConfig(redis_url=redis_url, namespace=namespace)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mcp-fuzz", daemon=True)
        self.thread.start()
        self.clients: dict[str, Client] = {}
        self.manager: SessionManager | None = None
        self._work: asyncio.Queue[tuple[Callable[[], Awaitable[Any]], Future[Any]] | None] | None = None
        ready: Future[None] = Future()
        self._holder = asyncio.run_coroutine_threadsafe(self._hold(dict(clients), ready), self.loop)
        ready.result(timeout=120)

    async def _hold(self, factories: dict[str, ClientFactory], ready: Future[None]) -> None:
        try:
            async with AsyncExitStack() as stack:
                self.manager = await SessionManager(self.config).connect()
                stack.push_async_callback(self.manager.close)
                for name, factory in factories.items():
                    self.clients[name] = await stack.enter_async_context(factory(self.manager))
                self._work = asyncio.Queue()
                ready.set_result(None)
                while (item := await self._work.get()) is not None:
                    work, done = item
                    try:
                        done.set_result(await work())
                    except Exception as exc:  # handed to the caller's thread
                        done.set_exception(exc)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    def run(self, work: Callable[[], Awaitable[Any]], timeout: float = 60) -> Any:
        """Run ``work`` in the holding task; its result or exception."""
        done: Future[Any] = Future()
        assert self._work is not None
        self.loop.call_soon_threadsafe(self._work.put_nowait, (work, done))
        return done.result(timeout=timeout)

    def call(self, identity: str, tool: str, arguments: dict[str, Any]) -> object:
        """One tool call; a client-side exception is returned (not raised) so the checks can report it."""
        client = self.clients[identity]

        async def work() -> object:
            try:
                if tool == RESOURCE:
                    return await client.read_resource(arguments["uri"])
                return await client.call_tool(tool, arguments)
            except Exception as exc:  # a protocol error or a dead server: reported by check_call
                return exc

        return self.run(work)

    def close(self) -> None:
        """Close the clients (stopping stdio servers), the manager and the loop."""
        assert self._work is not None
        self.loop.call_soon_threadsafe(self._work.put_nowait, None)
        self._holder.result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


async def seed(manager: SessionManager) -> None:
    """Sessions for the fuzzed calls to find: fuzz-a's own, fuzz-b's alone, a shared one, a completed one."""
    await manager.create_session("fuzz-a", session_id="fz-mine")
    await manager.create_session("fuzz-b", session_id="fz-other")
    await manager.emit_event("fz-other", {"type": "modified", "data": {"n": 1}}, "fuzz-b")
    await manager.create_session("fuzz-b", session_id="fz-shared")
    for agent in ("fuzz-a", "fuzz-c"):
        await manager.join_session("fz-shared", agent)
    await manager.create_session("fuzz-c", session_id="fz-done")
    await manager.complete_session("fz-done", "fuzz-c")


async def tool_schemas(client: Client) -> dict[str, dict[str, Any]]:
    """Each tool's input schema, as the server lists it."""
    return {tool.name: dict(tool.input_schema) for tool in (await client.list_tools()).tools}
