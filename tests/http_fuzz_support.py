"""HTTP API fuzzing with schemathesis against ``/openapi.json`` of a real ``huddle serve``: per operation and
token role (positive and negative generation), and stateful sequences over the links schemathesis infers.

Every response is checked: no 5xx, status, content type and body match the schema, an error is
``application/problem+json`` carrying a huddle ``code``, and a mutation refused with a 4xx leaves every key of
the server's namespace as it was (read directly from Redis before and after)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, cast

import schemathesis
from api_support import ApiServer, auth
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from mcp_fuzz_support import KNOWN_CODES, RedisView
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
ROLES = ("admin", "alice", "observer", "anonymous")
"""Token roles: admin, an agent (alice), an observer, and no token at all."""
ROLE_SHARE = {"observer": 0.5, "anonymous": 0.2}
"""Examples per role relative to admin and agent (whose writes get twice as many): an observer's write and an
anonymous request end early (403/401), so fewer of them are enough."""
HTTP_CODES = KNOWN_CODES | {"unauthorized", "payload_too_large", "too_many_streams", "method_not_allowed"}
WRITES_AS = {"alice": {"alice", "huddle"}}
"""Actors a role's requests may write events as (admin: anyone; observer and no token: nobody)."""
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
AGENT_IDS = ("alice", "bob", "carol")
AIMED_SESSIONS = ("known-alice", "known-bob", "known-shared", "known-shared")


class ServerLog:
    """Reads the server's stdout and stderr as they come: a long campaign logs more than a pipe holds, and a
    server blocked writing its log stops answering. Keeps the tracebacks of internal errors to report."""

    def __init__(self, server: ApiServer) -> None:
        self.lines: list[str] = []
        for stream in (server.process.stdout, server.process.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[bytes] | None) -> None:
        for line in iter(stream.readline, b"") if stream is not None else ():
            if len(self.lines) < 20_000:
                self.lines.append(line.decode(errors="replace").rstrip())

    def errors(self) -> list[str]:
        """The last line of each logged traceback (the exception), once each."""
        found = [line for line in self.lines if re.match(r"^[\w.]+(Error|Exception)\b", line)]
        return sorted(set(found))


SEEDED = {"known-alice": ("alice",), "known-bob": ("bob",), "known-shared": ("bob", "alice")}


def seed(server: ApiServer) -> None:
    """Sessions for the generated requests to find: alice's, bob's, and one both are members of. Run again
    before each operation: a join brings back a member who left and reopens a completed session."""
    for sid, members in SEEDED.items():
        server.request("admin", "POST", "/v1/sessions", json={"agent_id": members[0], "session_id": sid})
        for agent in members:
            server.request("admin", "POST", f"/v1/sessions/{sid}/members", json={"agent_id": agent})
        if server.request("admin", "GET", f"/v1/sessions/{sid}").json().get("status") == "completed":
            # A new member's join reopens a completed session; carol then leaves again.
            server.request("admin", "POST", f"/v1/sessions/{sid}/members", json={"agent_id": "carol"})
            server.request("admin", "DELETE", f"/v1/sessions/{sid}/members/carol")


@dataclass
class HttpFuzz:
    """One campaign against one server: what was sent per operation and role, and what failed."""

    server: ApiServer
    redis_url: str
    tried: Counter[tuple[str, str]] = field(default_factory=Counter)
    accepted: Counter[tuple[str, str]] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    """First failing request per (operation, kind of failure): the message with a curl command."""
    failure_count: int = 0

    def __post_init__(self) -> None:
        self.log = ServerLog(self.server)
        self.schema = schemathesis.openapi.from_url(f"{self.server.base}/openapi.json")
        self.schema.config.update(base_url=self.server.base)
        self.view = RedisView(self.redis_url, self.server.namespace)
        self.view.new_actors()  # the seeded events are nobody's fuzzed request
        # Session and lifecycle streams never end by themselves; a replay stream ends with its recording.
        self.fuzzable = self.schema.exclude(path_regex=r"^/v1/(sessions/[^/]+/events|lifecycle)/stream$")
        self.operations = [
            result.ok()  # type: ignore[union-attr]
            for result in self.fuzzable.get_all_operations()
        ]

    @property
    def requests(self) -> int:
        """Requests sent."""
        return sum(self.tried.values())

    def exercise(self, case: Any, role: str) -> Any:
        """Send one case as ``role``, check the response and, for a refused mutation, Redis; record failures."""
        headers = auth(role) if role != "anonymous" else {}
        mutating = case.method.upper() in MUTATING
        before = _foreground(self.view.snapshot()) if mutating else None
        ttls = self.view.ttls
        started = time.monotonic()
        response = case.call(headers=headers)
        label = case.operation.label
        self.tried[(label, role)] += 1
        self.accepted[(label, role)] += response.status_code < 300
        self.statuses[response.status_code] += 1
        problems: list[tuple[str, str]] = []
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup) as exc:  # FailureGroup: keep going, report every kind once
            problems.append((type(exc).__name__ + ":" + _first_line(str(exc)), str(exc)))
        if response.status_code >= 500:
            time.sleep(0.05)  # let the reader thread take the server's traceback
            problems.append(("server-log", "server log: " + " | ".join(self.log.lines[-2:])))
        if response.status_code >= 400:
            problems += _problem_document(response)
        actors = set(self.view.new_actors())
        if role != "admin" and not actors <= WRITES_AS.get(role, set()):
            problems.append(("wrote-as-another", f"{role}'s request wrote events as {sorted(actors)}"))
        if before is not None and 400 <= response.status_code < 500:
            after = _foreground(self.view.snapshot())
            if after != before:
                diff = self.view.explain(before, after, ttls)
                took = f"{time.monotonic() - started:.2f} s"
                problems.append(
                    ("refused-but-wrote", f"{response.status_code} in {took}, Redis changed: {diff}")
                )
        for kind, message in problems:
            self.failure_count += 1
            key = f"{label} [{role}] {kind}"
            if key not in self.failures:
                curl = case.as_curl_command(headers=headers)
                body = response.text[:600]
                self.failures[key] = (
                    f"{key}\n  {curl}\n  -> {response.status_code} {body}\n  {message[:1500]}"
                )
        return response

    def per_operation(self, examples: int, roles: tuple[str, ...] = ROLES) -> None:
        """``examples`` generated cases per operation and role (half positive, half negative data), with
        path ids often replaced by the seeded sessions and agents so requests reach real data."""
        for operation in self.operations:
            seed(self.server)  # the operations before may have completed or left the seeded sessions
            self.view.new_actors()  # the seeding's own events are nobody's fuzzed request
            strategies = [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]
            writes = 2 if operation.method.upper() in MUTATING else 1
            for role in roles:
                share = ROLE_SHARE.get(role, 1.0) * (writes if role in ("admin", "alice") else 1)
                self._run(st.one_of(strategies), role, max(1, round(examples * share)))

    def _run(self, strategy: st.SearchStrategy[Any], role: str, examples: int) -> None:
        @given(case=strategy, data=st.data())
        @settings(
            max_examples=examples, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        def run(case: Any, data: st.DataObject) -> None:
            _aim_at_known_data(case, data, role)
            self.exercise(case, role)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # the harness broke: a failure of the campaign
            self.failure_count += 1
            self.failures.setdefault(f"harness {role}", f"{type(exc).__name__}: {str(exc)[:1500]}")

    def appends(self, examples: int, roles: tuple[str, ...] = ("alice", "admin")) -> None:
        """Event appends built from the event model (one event or a batch, snake or camel case, transitions from
        the right or a wrong state, idempotency keys, stray fields) to the seeded shared session: generated
        schema data rarely gets an append accepted, these mostly do, through the same checks."""
        operation = next(op for op in self.operations if op.label == "POST /v1/sessions/{session_id}/events")
        seed(self.server)
        self.view.new_actors()
        for role in roles:
            agent = role if role in AGENT_IDS else "bob"
            self._appends_as(operation, role, agent, examples)

    def _appends_as(self, operation: Any, role: str, agent: str, examples: int) -> None:
        @given(body=_event_bodies(agent), key=st.none() | st.sampled_from(["k1", "k2", "k3"]))
        @settings(
            max_examples=examples, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        def run(body: Any, key: str | None) -> None:
            headers = {"Idempotency-Key": key} if key else {}
            case = operation.Case(path_parameters={"session_id": "known-shared"}, body=body, headers=headers)
            self.exercise(case, role)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # the harness broke: a failure of the campaign
            self.failure_count += 1
            self.failures.setdefault(f"harness appends {role}", f"{type(exc).__name__}: {str(exc)[:1500]}")

    def stateful(self, role: str, examples: int, steps: int) -> int:
        """Sequences of linked calls (schemathesis' state machine over inferred links); returns the number
        of transitions it knows (0: no stateful run possible)."""
        machine = self.fuzzable.as_state_machine()
        links = _count_links(machine)
        if links == 0:
            return 0
        fuzz = self

        class Machine(machine):  # type: ignore[valid-type, misc]
            def call(self, case: Any, **kwargs: Any) -> Any:
                return fuzz.exercise(case, role)

            def validate_response(self, response: Any, case: Any, *args: Any, **kwargs: Any) -> None:
                return None  # exercise() checked it (and Redis) already

        Machine.run(
            settings=settings(
                max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
                suppress_health_check=list(HealthCheck),
            )
        )  # fmt: skip
        return links

    def table(self) -> str:
        """Requests (of which 2xx) per operation and role (for docs/reliability.md), then statuses."""
        roles = [role for role in ROLES if any(r == role for _, r in self.tried)]
        lines = ["| operation | " + " | ".join(roles) + " |", "|---" * (len(roles) + 1) + "|"]
        for label in sorted({label for label, _ in self.tried}):
            cells = [f"{self.tried[(label, r)]} ({self.accepted[(label, r)]})" for r in roles]
            lines.append(f"| `{label}` | " + " | ".join(cells) + " |")
        lines.append(f"statuses: {dict(sorted(self.statuses.items()))}")
        return "\n".join(lines)

    def close(self) -> None:
        self.view.close()


NAMES = st.sampled_from(
    ["modified", "broke", "fixed", "test_pass", "handoff", "custom.kind:1", "x" * 65, "a b"]
)
STATES = st.sampled_from(["working", "broken", "review", "working", "nope!"])
STRAY = st.dictionaries(
    st.sampled_from(["seq", "timestamp", "session_id", "id", "extra", "v"]), st.integers()
)


def _event_bodies(agent: str) -> st.SearchStrategy[Any]:
    """Append bodies as clients write them: mostly valid events of ``agent``, some with faults."""
    change = st.fixed_dictionaries(
        {
            "elementType": st.sampled_from(["file", "api_endpoint", ""]),
            "operation": st.sampled_from(["edit", "x"]),
        },
        optional={
            "entityIds": st.lists(st.text(max_size=12), max_size=3),
            "description": st.text(max_size=30),
        },
    )
    transition = st.fixed_dictionaries(
        {"from": STATES, "to": STATES}, optional={"confidence": st.floats(-0.5, 1.5, allow_nan=False)}
    )
    event = st.fixed_dictionaries(
        {"type": NAMES, "actor": st.sampled_from([agent] * 7 + ["carol"])},
        optional={"changeInfo": change, "stateTransition": transition, "data": st.dictionaries(
            st.text(max_size=6), st.integers() | st.text(max_size=10), max_size=3)},
    ).flatmap(lambda e: STRAY.map(lambda extra: {**extra, **e}))  # fmt: skip
    return event | st.lists(event, min_size=1, max_size=4)


def _count_links(machine: Any) -> int:
    transitions = getattr(machine, "_transitions", None)  # schemathesis' private record of the links it uses
    operations = getattr(transitions, "operations", {})
    return sum(len(entry.outgoing) for entry in operations.values())


def _aim_at_known_data(case: Any, data: st.DataObject, role: str) -> None:
    """Often replace generated ids by seeded ones (two times in three), so requests get past 'not found' and
    'not a member' to the code behind: the shared session, the role's own agent as actor."""
    often = st.sampled_from([True, True, False])
    params = case.path_parameters or {}
    if "session_id" in params and data.draw(often, label="known session"):
        params["session_id"] = data.draw(st.sampled_from(AIMED_SESSIONS), label="session")
    if "agent_id" in params and data.draw(often, label="known agent"):
        params["agent_id"] = data.draw(st.sampled_from(AGENT_IDS), label="agent")
    headers = case.headers or {}
    if "If-Match" in headers and data.draw(often, label="drop If-Match"):
        del headers["If-Match"]  # a random If-Match is refused before anything else is looked at
    bodies = case.body if isinstance(case.body, list) else [case.body]
    if data.draw(often, label="known actor"):
        agent = role if role in AGENT_IDS else data.draw(st.sampled_from(AGENT_IDS), label="actor")
        for body in bodies:  # one actor for a whole batch, as the API requires
            for name in ("actor", "agent_id"):
                if isinstance(body, dict) and (name in body or (name == "actor" and len(bodies) > 1)):
                    body[name] = agent


BACKGROUND_KEYS = re.compile(rb":replay:\{[^}]*\}:|:replay_holds$")
HOLD_FIELDS = frozenset({b"hold", b"holdx"})


def _foreground(snapshot: dict[bytes, object]) -> dict[bytes, object]:
    """A snapshot without what a running recording writes on its own between requests (its frames, its hold
    lease and the hold fields of the session's meta): requests are sequential, the recorder is not."""
    kept: dict[bytes, object] = {}
    for key, entry in snapshot.items():
        if BACKGROUND_KEYS.search(key):
            continue
        kind, value = cast(tuple[bytes, object], entry)
        if key.endswith(b":meta") and isinstance(value, frozenset):
            value = frozenset(item for item in value if item[0] not in HOLD_FIELDS)
        kept[key] = (kind, value)
    return kept


def _problem_document(response: Any) -> list[tuple[str, str]]:
    kind = response.headers.get("content-type", "")
    kind = kind[0] if isinstance(kind, list) and kind else str(kind)  # schemathesis keeps lists of values
    if not kind.startswith("application/problem+json"):
        return [("not-problem-json", f"error with content-type {kind!r}")]
    try:
        body = json.loads(response.text)
    except ValueError:
        return [("problem-not-json", "problem document is not JSON")]
    code = body.get("code") if isinstance(body, dict) else None
    if code not in HTTP_CODES:
        return [("problem-without-code", f"code {code!r} is not a huddle code")]
    if body.get("status") != response.status_code:
        return [("problem-status-mismatch", f"status {body.get('status')!r} vs {response.status_code}")]
    return []


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("-")]
    return re.sub(r"\s+", " ", lines[0] if lines else text)[:120]
