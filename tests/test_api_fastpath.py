"""The lean append path answers exactly as the documented FastAPI route does (status, body, headers, log)."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.types import Receive, Scope, Send

from huddle import SessionManager
from huddle.api import TokenStore, create_app
from huddle.api.fastpath import AppendFastPath

TOKENS = TokenStore.parse_env(
    "agent:alice=tok-alice agent:bob=tok-bob observer:o=tok-obs admin:root=tok-admin"
)
EVENT = {
    "type": "modified",
    "changeInfo": {"elementType": "file", "entityIds": ["a.py"], "operation": "edit"},
}


def requests(session: str) -> list[tuple[str, dict[str, str], bytes]]:
    """(token, extra headers, body) of appends that succeed and that fail in every way the route knows."""
    alice = {**EVENT, "actor": "alice"}
    dumped = httpx.Request("POST", "/", json=alice).content
    return [
        ("tok-alice", {}, dumped),
        ("tok-alice", {"Idempotency-Key": "k1"}, dumped),
        ("tok-alice", {"Idempotency-Key": "k1"}, dumped),  # the retry: same seq
        ("tok-alice", {}, httpx.Request("POST", "/", json=[alice, alice]).content),
        ("tok-alice", {"If-Match": '"1"'}, dumped),  # 412
        ("tok-alice", {"If-Match": "nonsense"}, dumped),  # 422 from expected_seq_of
        ("tok-alice", {"Idempotency-Key": "bad key!"}, dumped),  # 422 from the header pattern
        ("tok-alice", {}, httpx.Request("POST", "/", json={**EVENT, "actor": "bob"}).content),  # 403
        ("tok-obs", {}, dumped),  # 403: an observer cannot write
        ("wrong", {}, dumped),  # 401
        ("tok-alice", {}, b"{not json"),  # 422
        ("tok-alice", {}, b'{"type": "modified"}'),  # 422: no actor
        ("tok-alice", {}, b"[]"),  # 422: empty list
        ("tok-alice", {"Content-Type": "text/plain"}, dumped),  # 422: not JSON
        ("tok-admin", {}, httpx.Request("POST", "/", json=[alice, {**EVENT, "actor": "bob"}]).content),  # 422
        ("tok-alice", {}, b"x" * 70_000),  # 413
    ]


class CountingPath(AppendFastPath):
    """Counts the requests the fast path hands to the documented route."""

    handed: list[int] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send, session_id: str, full: Any) -> None:
        self.handed.append(0)

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            self.handed[-1] = 1
            await full(scope, receive, send)

        await super().__call__(scope, receive, send, session_id, counted)


async def answers(manager: SessionManager, session: str, fast: bool) -> list[tuple[int, Any, str | None]]:
    app = create_app(manager, tokens=TOKENS, mcp=False, console=False, max_body_bytes=65_536)
    app.fast_append = CountingPath(manager, TOKENS, 65_536) if fast else None
    transport = httpx.ASGITransport(app=app)
    found: list[tuple[int, Any, str | None]] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for token, headers, body in requests(session):
            response = await client.post(
                f"/v1/sessions/{session}/events",
                content=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", **headers},
            )
            assert response.status_code < 500, response.text
            found.append((response.status_code, response.json(), response.headers.get("etag")))
    return found


async def test_the_fast_path_and_the_documented_route_answer_alike(make_manager: Any) -> None:
    manager = await make_manager()
    results = []
    for fast in (True, False):
        session = await manager.create_session("alice")
        await manager.join_session(session, "bob")
        results.append(await answers(manager, session, fast))
    fast_answers, route_answers = results
    # Only what the models or header patterns refuse goes to the documented route (for its own 422 text).
    assert CountingPath.handed == [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0]
    assert [status for status, _, _ in fast_answers] == [
        201, 201, 201, 201, 412, 422, 422, 403, 403, 401, 422, 422, 422, 422, 422, 413,
    ]  # fmt: skip
    for got, expected in zip(fast_answers, route_answers, strict=True):
        assert got[0] == expected[0] and got[2] == expected[2]
        if isinstance(got[1], dict) and "instance" in got[1]:  # problem bodies name the session's own path
            got[1].pop("instance"), expected[1].pop("instance")
        assert got[1] == expected[1]
