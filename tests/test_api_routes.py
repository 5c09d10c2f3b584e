"""The HTTP API over a real ``huddle serve`` subprocess and real Redis: every route, roles, problems."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as redis_py
from api_support import TOKENS, ApiServer, auth
from httpx_sse import connect_sse

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig


@pytest.fixture(scope="module")
def api(redis_server: EmbeddedRedis) -> Iterator[ApiServer]:
    server = ApiServer(redis_server.url, "--sse-heartbeat", "0.2", "--max-body-bytes", "65536")
    yield server
    assert server.stop() == 0


def sid() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


def modified(actor: str, n: int = 0) -> dict[str, Any]:
    return {
        "type": "modified",
        "actor": actor,
        "changeInfo": {"elementType": "file", "entityIds": [f"f{n}.py"], "operation": "edit"},
    }


def events_of(api: ApiServer, session: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: int | None = 1
    while cursor is not None:
        page = api.request(
            "observer", "GET", f"/v1/sessions/{session}/events", params={"from_seq": cursor}
        ).json()
        found += page["events"]
        cursor = page["next_from_seq"]
    return found


def test_three_agents_collaborate_while_an_observer_streams(api: ApiServer) -> None:
    session = sid()
    created = api.request("alice", "POST", "/v1/sessions", json={"agent_id": "alice", "session_id": session})
    assert created.status_code == 201 and created.headers["location"] == f"/v1/sessions/{session}"
    assert created.json()["agents"].keys() == {"alice"} and created.json()["last_seq"] == 1
    received: list[tuple[str, str, dict[str, Any]]] = []

    def observe() -> None:
        url = f"/v1/sessions/{session}/events/stream"
        with (
            httpx.Client(base_url=api.base, timeout=30, headers=auth("observer")) as client,
            connect_sse(client, "GET", url) as source,
        ):
            for sse in source.iter_sse():
                received.append((sse.id, sse.event, json.loads(sse.data)))
                if sse.event == "completed":
                    return

    watcher = threading.Thread(target=observe)
    watcher.start()
    for agent in ("bob", "carol"):
        joined = api.request(agent, "POST", f"/v1/sessions/{session}/members", json={"agent_id": agent})
        assert joined.status_code == 200 and joined.json()["changed"] is True
    seqs = []
    for round_ in range(3):
        for agent in ("alice", "bob", "carol"):
            response = api.request(
                agent, "POST", f"/v1/sessions/{session}/events", json=modified(agent, round_)
            )
            assert response.status_code == 201, response.text
            seqs.append(response.json()["seq"])
    done = api.request("carol", "POST", f"/v1/sessions/{session}/complete", json={})
    assert done.status_code == 200
    watcher.join(30)
    assert not watcher.is_alive()
    stored = events_of(api, session)
    assert seqs == list(range(4, 13)) and [e["seq"] for e in stored] == list(range(1, 14))
    frames = [r for r in received if r[1] != "completed"]
    assert [int(i) for i, _, _ in frames] == list(range(1, 14))  # every event once, in order
    assert [d for _, _, d in frames] == stored  # the same JSON as GET .../events
    assert received[-1][1] == "completed" and received[-1][2]["last_seq"] == 13


def test_sse_resume_with_last_event_id_delivers_each_event_once_in_order(api: ApiServer) -> None:
    session = sid()
    api.request("alice", "POST", "/v1/sessions", json={"agent_id": "alice", "session_id": session})
    for n in range(5):
        api.request("alice", "POST", f"/v1/sessions/{session}/events", json=modified("alice", n))
    seen: list[int] = []
    with api.as_("observer") as client:
        with connect_sse(client, "GET", f"/v1/sessions/{session}/events/stream") as source:
            for sse in source.iter_sse():
                seen.append(int(sse.id))
                if len(seen) == 3:
                    break  # drop the connection mid-stream
        last = seen[-1]
        batch = [modified("alice", n) for n in range(4)]
        assert api.request("alice", "POST", f"/v1/sessions/{session}/events", json=batch).json()["seqs"] == [
            7, 8, 9, 10,
        ]  # fmt: skip
        api.request("alice", "POST", f"/v1/sessions/{session}/complete", json={})
        headers = {"Last-Event-ID": str(last)}
        with connect_sse(client, "GET", f"/v1/sessions/{session}/events/stream", headers=headers) as source:
            for sse in source.iter_sse():
                if sse.event == "completed":
                    break
                seen.append(int(sse.id))
    assert seen == list(range(1, 12))


def test_heartbeats_on_an_idle_stream_and_the_lifecycle_stream(api: ApiServer) -> None:
    session = sid()
    api.request("admin", "POST", "/v1/sessions", json={"agent_id": "alice", "session_id": session})
    with api.as_("observer") as client:
        with client.stream(
            "GET", f"/v1/sessions/{session}/events/stream", params={"from_seq": 2}
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            assert ": heartbeat" in [next(lines) for _ in range(2)]  # nothing else happens: heartbeats
        # One join right after the stream answered: its subscription is live before the response starts.
        with client.stream("GET", "/v1/lifecycle/stream") as response:
            api.request("admin", "POST", f"/v1/sessions/{session}/members", json={"agent_id": "bob"})
            notices: list[dict[str, Any]] = []
            deadline = time.monotonic() + 5  # heartbeats every 0.2 s keep the lines coming meanwhile
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    notices.append({"event": event, **json.loads(line[6:])})
                    if event == "join" and notices[-1]["session_id"] == session:
                        break
                assert time.monotonic() < deadline, f"the join was missed; saw {notices}"
    assert notices[-1]["actor"] == "bob"


def test_access_rules_per_role(api: ApiServer) -> None:
    session = sid()
    api.request("alice", "POST", "/v1/sessions", json={"agent_id": "alice", "session_id": session})
    api.request("bob", "POST", f"/v1/sessions/{session}/members", json={"agent_id": "bob"})
    before = events_of(api, session)
    forged = api.request("alice", "POST", f"/v1/sessions/{session}/events", json=modified("bob"))
    assert forged.status_code == 403 and forged.json()["code"] == "forbidden"
    batch = [modified("alice"), modified("bob")]
    assert api.request("alice", "POST", f"/v1/sessions/{session}/events", json=batch).status_code == 422
    assert api.request("alice", "DELETE", f"/v1/sessions/{session}/members/bob").status_code == 403
    assert api.request("alice", "POST", "/v1/sessions", json={"agent_id": "bob"}).status_code == 403
    assert (
        api.request("alice", "POST", f"/v1/sessions/{session}/complete", json={"actor": "bob"}).status_code
        == 403
    )
    observer = api.request("observer", "POST", f"/v1/sessions/{session}/events", json=modified("alice"))
    assert observer.status_code == 403 and observer.json()["code"] == "forbidden"
    assert api.request("observer", "POST", f"/v1/sessions/{session}/recording").status_code == 403
    assert events_of(api, session) == before  # nothing was written
    anonymous = api.request(None, "GET", f"/v1/sessions/{session}")
    assert anonymous.status_code == 401 and anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert (
        api.request(
            None, "GET", f"/v1/sessions/{session}", headers={"Authorization": "Bearer nope"}
        ).status_code
        == 401
    )
    cookie = httpx.get(f"{api.base}/v1/sessions/{session}", cookies={"huddle_token": TOKENS["observer"]})
    assert cookie.status_code == 200
    assert api.request(None, "GET", "/livez").status_code == 200  # health stays public
    assert api.request(None, "GET", "/openapi.json").status_code == 200
    # the admin may act for anyone
    assert (
        api.request("admin", "POST", f"/v1/sessions/{session}/events", json=modified("bob")).status_code
        == 201
    )


def test_error_classes_map_to_status_and_problem_bodies(api: ApiServer, redis_server: EmbeddedRedis) -> None:
    session = sid()
    api.request("alice", "POST", "/v1/sessions", json={"agent_id": "alice", "session_id": session})
    url = f"/v1/sessions/{session}/events"

    def check(response: httpx.Response, status: int, code: str) -> None:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert (
            body["status"] == status
            and body["code"] == code
            and body["type"].endswith(code)
            and body["detail"]
        )

    check(
        api.request("alice", "POST", url, json={"type": "bad type!", "actor": "alice"}),
        422,
        "invalid_request",
    )
    check(
        api.request("alice", "POST", url, content=b"{not json", headers={"content-type": "application/json"}),
        422,
        "invalid_request",
    )
    check(api.request("alice", "POST", url, json={"type": "start", "actor": "alice"}), 422, "invalid_event")
    check(api.request("observer", "GET", "/v1/sessions/bad%20id"), 422, "invalid_request")
    check(api.request("observer", "GET", "/v1/sessions/nope-nope"), 404, "session_not_found")
    check(
        api.request("observer", "GET", f"/v1/sessions/{session}/checkpoints/cp-99"),
        404,
        "checkpoint_not_found",
    )
    check(api.request("observer", "GET", "/v1/replays/rp-none"), 404, "replay_not_found")
    check(api.request("observer", "GET", "/v1/no-such-route"), 404, "not_found")
    ok = api.request("alice", "POST", url, json=modified("alice"), headers={"If-Match": '"1"'})
    assert ok.status_code == 201 and ok.headers["etag"] == '"2"'
    check(
        api.request("alice", "POST", url, json=modified("alice"), headers={"If-Match": '"1"'}),
        412,
        "sequence_conflict",
    )
    check(
        api.request("alice", "POST", url, json=modified("alice"), headers={"If-Match": "x"}),
        422,
        "invalid_request",
    )
    transition = {"type": "broke", "actor": "alice", "stateTransition": {"from": "nope", "to": "broken"}}
    check(api.request("alice", "POST", url, json=transition), 409, "state_conflict")
    check(api.request("bob", "POST", url, json=modified("bob")), 403, "not_a_member")
    check(
        api.request("alice", "POST", url, content=b"x" * 70000, headers={"content-type": "application/json"}),
        413,
        "payload_too_large",
    )
    check(
        api.request("admin", "POST", "/v1/sessions", json={"agent_id": "alice", "session_id": session}),
        409,
        "session_exists",
    )
    api.request("alice", "POST", f"/v1/sessions/{session}/complete", json={})
    check(api.request("alice", "POST", url, json=modified("alice")), 409, "session_completed")
    # an expired session: its keys are gone but the activity index still knows it
    gone = sid()
    api.request("alice", "POST", "/v1/sessions", json={"agent_id": "alice", "session_id": gone})
    raw = redis_py.Redis(port=redis_server.port)
    raw.delete(*raw.keys(f"{api.namespace}:*{gone}*"))
    raw.close()
    check(api.request("observer", "GET", f"/v1/sessions/{gone}"), 410, "session_expired")
    check(api.request("observer", "GET", "/v1/sessions", params={"limit": 0}), 422, "invalid_request")
    check(api.request("observer", "PUT", "/v1/sessions"), 405, "method_not_allowed")


def test_redis_unavailable_is_503_with_retry_after() -> None:
    with EmbeddedRedis() as redis:
        server = ApiServer(
            redis.url,
            env={
                "HUDDLE_SOCKET_TIMEOUT": "0.5",
                "HUDDLE_RETRY_ATTEMPTS": "0",
                "HUDDLE_SOCKET_CONNECT_TIMEOUT": "0.5",
            },
        )
        try:
            redis.stop(cleanup=False)
            response = server.request("admin", "POST", "/v1/sessions", json={"agent_id": "alice"})
            assert response.status_code == 503 and response.json()["code"] == "redis_unavailable"
            assert int(response.headers["retry-after"]) >= 1
            redis.start()
        finally:
            server.stop()


def test_sessions_listing_members_checkpoints_failure_snapshots_and_stats(api: ApiServer) -> None:
    agent = f"lister{uuid.uuid4().hex[:6]}"
    ids = []
    for n in range(5):
        body = {"agent_id": agent, "metadata": {"n": n}, "initial_state": "draft" if n % 2 else "working"}
        ids.append(api.request("admin", "POST", "/v1/sessions", json=body).json()["session_id"])
    pages: list[str] = []
    cursor = None
    while True:
        params = {"agent": agent, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.request("observer", "GET", "/v1/sessions", params=params).json()
        pages += [s["session_id"] for s in page["sessions"]]
        assert all(
            s["agents"] == [agent] and "last_seq" in s and "broken_since" in s for s in page["sessions"]
        )
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(pages) == sorted(ids)
    drafts = api.request("observer", "GET", "/v1/sessions", params={"agent": agent, "state": "draft"}).json()
    assert sorted(s["session_id"] for s in drafts["sessions"]) == sorted(ids[1::2])
    # All live sessions (no agent filter): pages of 1 filtered by a state only two of them have, so each page
    # reads past sessions of other states (the read widens) and the cursor carries on from there.
    rare = f"rare{uuid.uuid4().hex[:6]}"
    rare_ids = [
        api.request("admin", "POST", "/v1/sessions", json={"agent_id": agent, "initial_state": rare}).json()[
            "session_id"
        ]
        for _ in range(2)
    ]
    for _ in range(8):  # sessions of another state, newer than the two rare ones
        api.request("admin", "POST", "/v1/sessions", json={"agent_id": agent})
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"state": rare, "limit": 1, **({"cursor": cursor} if cursor else {})}
        page = api.request("observer", "GET", "/v1/sessions", params=params).json()
        seen += [s["session_id"] for s in page["sessions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(rare_ids)
    session = ids[0]
    joined = api.request("admin", "POST", f"/v1/sessions/{session}/members", json={"agent_id": "bob"})
    assert joined.json()["changed"] is True
    left = api.request("bob", "DELETE", f"/v1/sessions/{session}/members/bob")
    assert left.status_code == 200 and left.json()["changed"] is True
    checkpoint = api.request(
        "admin", "POST", f"/v1/sessions/{session}/checkpoints", json={"force_snapshot": True}
    )
    assert checkpoint.status_code == 201 and checkpoint.json()["checkpoint_id"].startswith("cp-")
    cp_id = checkpoint.json()["checkpoint_id"]
    assert (
        api.request("observer", "GET", f"/v1/sessions/{session}/checkpoints/{cp_id}").json()["seq"]
        == checkpoint.json()["seq"]
    )
    listed = api.request("observer", "GET", f"/v1/sessions/{session}/checkpoints").json()["checkpoints"]
    assert cp_id in [c["checkpoint_id"] for c in listed]
    broke = {"type": "broke", "actor": agent, "stateTransition": {"from": "working", "to": "broken"}}
    assert api.request("admin", "POST", f"/v1/sessions/{session}/events", json=broke).status_code == 201
    refs = api.request("observer", "GET", "/v1/failure-snapshots").json()["snapshots"]
    ref = next(r for r in refs if r["session_id"] == session)
    snapshot = api.request("observer", "GET", f"/v1/failure-snapshots/{session}/{ref['snapshot_id']}").json()
    assert snapshot["state"] == "broken" and snapshot["events"]
    assert api.request("observer", "GET", f"/v1/failure-snapshots/{session}/1-0").status_code == 404
    assert api.request("observer", "GET", f"/v1/failure-snapshots/{session}/nope").status_code == 422
    stats = api.request("observer", "GET", "/v1/stats").json()
    assert stats["active_sessions"] >= 5 and stats["broken_sessions"] >= 1


def test_idempotent_retries_and_atomic_batches(api: ApiServer) -> None:
    session = sid()
    api.request("alice", "POST", "/v1/sessions", json={"agent_id": "alice", "session_id": session})
    url = f"/v1/sessions/{session}/events"
    key = {"Idempotency-Key": "retry-1"}
    first = api.request("alice", "POST", url, json=modified("alice"), headers=key).json()["seq"]
    again = api.request("alice", "POST", url, json=modified("alice"), headers=key).json()["seq"]
    assert first == again == 2
    batch = [modified("alice", n) for n in range(3)]
    seqs = api.request("alice", "POST", url, json=batch, headers={"Idempotency-Key": "batch-1"}).json()[
        "seqs"
    ]
    assert (
        api.request("alice", "POST", url, json=batch, headers={"Idempotency-Key": "batch-1"}).json()["seqs"]
        == seqs
    )
    bad = [
        modified("alice"),
        {"type": "broke", "actor": "alice", "stateTransition": {"from": "nope", "to": "x"}},
    ]
    assert api.request("alice", "POST", url, json=bad).status_code == 409  # all or nothing
    assert [e["seq"] for e in events_of(api, session)] == [1, 2, 3, 4, 5]
    snake = {"type": "modified", "actor": "alice", "change_info": {"element_type": "f", "operation": "op"}}
    assert api.request("alice", "POST", url, json=snake).json()["seq"] == 6
    assert events_of(api, session)[-1]["change_info"]["elementType"] == "f"


def test_replay_routes_record_list_verify_page_play_and_export(api: ApiServer) -> None:
    session = sid()
    api.request("admin", "POST", "/v1/sessions", json={"agent_id": "alice", "session_id": session})
    started = api.request("admin", "POST", f"/v1/sessions/{session}/recording", json={"from_start": True})
    assert started.status_code == 201
    replay_id = started.json()["replay_id"]
    for n in range(4):
        api.request("alice", "POST", f"/v1/sessions/{session}/events", json=modified("alice", n))
    stopped = api.request("admin", "DELETE", f"/v1/sessions/{session}/recording")
    assert stopped.json()["replay_id"] == replay_id
    info = api.request("observer", "GET", f"/v1/replays/{replay_id}").json()
    assert info["frames"] == 5 and info["session_id"] == session
    listed = api.request("observer", "GET", "/v1/replays", params={"limit": 100}).json()["replays"]
    assert replay_id in [r["replay_id"] for r in listed]
    assert api.request("observer", "POST", f"/v1/replays/{replay_id}/verify").json()["ok"] is True
    page = api.request(
        "observer", "GET", f"/v1/replays/{replay_id}/frames", params={"from_index": 1, "limit": 2}
    ).json()
    assert [f["index"] for f in page["frames"]] == [1, 2] and page["next_from_index"] == 3
    frame = page["frames"][0]
    assert (
        frame["seq"] == 2 and frame["event"]["type"] == "modified" and frame["state"]["agents"] == ["alice"]
    )
    played: list[int] = []
    with api.as_("observer") as client:
        params = {"speed": 0, "event_types": "modified"}
        with connect_sse(client, "GET", f"/v1/replays/{replay_id}/stream", params=params) as source:
            for sse in source.iter_sse():
                if sse.event == "end":
                    assert json.loads(sse.data)["frames"] == 4
                    break
                played.append(json.loads(sse.data)["seq"])
    assert played == [2, 3, 4, 5]
    exported = api.request("observer", "GET", f"/v1/replays/{replay_id}/export")
    assert exported.headers["content-type"].startswith("application/jsonl")
    assert len(exported.text.strip().splitlines()) == 6  # a header line and one line per frame


def test_openapi_describes_every_route_with_library_models(api: ApiServer) -> None:
    schema = api.request(None, "GET", "/openapi.json").json()
    paths = schema["paths"]
    for path in (
        "/v1/sessions", "/v1/sessions/{session_id}", "/v1/sessions/{session_id}/events",
        "/v1/sessions/{session_id}/events/stream", "/v1/lifecycle/stream", "/v1/replays/{replay_id}/stream",
    ):  # fmt: skip
        assert path in paths
    assert {"SessionDocument", "Event", "Checkpoint", "SessionStats", "Problem"} <= set(
        schema["components"]["schemas"]
    )
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert api.request(None, "GET", "/docs").status_code == 404  # no CDN-backed docs page


def test_a_session_already_completed_streams_its_log_then_completed(api: ApiServer) -> None:
    session = sid()
    api.request("alice", "POST", "/v1/sessions", json={"agent_id": "alice", "session_id": session})
    api.request("alice", "POST", f"/v1/sessions/{session}/complete", json={})
    url = f"/v1/sessions/{session}/events/stream"
    with api.as_("observer") as client, connect_sse(client, "GET", url) as source:
        kinds = [sse.event for sse in source.iter_sse()]
    assert kinds == ["start", "complete", "completed"]


def test_library_and_api_see_the_same_log(api: ApiServer, redis_server: EmbeddedRedis) -> None:
    session = sid()
    api.request("alice", "POST", "/v1/sessions", json={"agent_id": "alice", "session_id": session})

    async def library() -> list[int]:
        config = SessionManagerConfig(redis_url=redis_server.url, namespace=api.namespace)
        async with SessionManager(config) as manager:
            await manager.emit_event(session, {"type": "modified"}, "alice")
            return [e.seq for e in await manager.get_events(session)]

    assert asyncio.run(library()) == [1, 2]
    assert [e["seq"] for e in events_of(api, session)] == [1, 2]


def test_api_observer_and_admin_tokens_open_health_endpoints_guarded_by_their_own_token(
    redis_server: EmbeddedRedis,
) -> None:
    server = ApiServer(redis_server.url, "--token", "health-secret-0123456789")
    try:
        detailed = "/health/detailed"
        assert server.request(None, "GET", detailed).status_code == 401
        assert server.request("alice", "GET", detailed).status_code == 401  # an agent token does not
        for who in ("observer", "admin"):
            assert server.request(who, "GET", detailed).status_code == 200, who
            assert server.request(who, "GET", "/metrics").status_code == 200, who
        cookie = {"Cookie": f"huddle_token={TOKENS['observer']}"}  # what the console's health page sends
        assert server.request(None, "GET", "/health/metrics", headers=cookie).status_code == 200
        health_bearer = {"Authorization": "Bearer health-secret-0123456789"}
        assert server.request(None, "GET", detailed, headers=health_bearer).status_code == 200
        assert server.request(None, "GET", "/livez").status_code == 200
    finally:
        server.stop()
