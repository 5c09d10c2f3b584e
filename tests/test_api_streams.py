"""Stream bounds: slow readers, trimmed logs, the stream limit, SIGTERM during streams and writes."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from api_support import ApiServer, auth
from httpx_sse import connect_sse

from huddle import EmbeddedRedis, SessionManager, SessionManagerConfig
from huddle.api.fanout import Coalescing, Encoded, Hub
from huddle.api.sse import HEARTBEAT
from huddle.api.streams import StreamService, StreamSettings
from huddle.errors import EventsRolledBackError, EventsTrimmedError


def parse(chunk: bytes) -> list[dict[str, str]]:
    """The events of an SSE chunk (comments skipped)."""
    found = []
    for block in chunk.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "data" in fields:
            found.append(fields)
    return found


async def test_a_slow_reader_is_closed_with_its_resume_id_and_never_delays_another(make_manager: Any) -> None:
    manager = await make_manager(checkpoint_interval=1000)
    session = await manager.create_session("alice")
    service = StreamService(manager, StreamSettings(buffer_events=4, heartbeat=0.05))
    slow = service.session_events(session, 1)
    fast = service.session_events(session, 1)
    assert [e["id"] for e in parse(await anext(slow))] == ["1"]
    assert await anext(slow) == HEARTBEAT  # caught up and live; from now on it reads nothing
    assert [e["id"] for e in parse(await anext(fast))] == ["1"]
    fast_seen: list[int] = []
    for n in range(10):
        await manager.emit_event(session, {"type": "modified", "data": {"n": n}}, "alice")
        while len(fast_seen) < n + 1:  # the fast reader keeps up while the slow one reads nothing
            for event in parse(await anext(fast)):
                fast_seen.append(int(event["id"]))
    assert fast_seen == list(range(2, 12))
    hub = service.fanout.sessions[session]
    assert any(sub.overflowed for sub in hub.subscribers)
    closing = parse(await anext(slow))
    assert closing[-1]["event"] == "error"
    body = json.loads(closing[-1]["data"])
    assert body["code"] == "slow_reader" and body["resume_from_seq"] == 2  # what it had not received
    with pytest.raises(StopAsyncIteration):
        await anext(slow)
    await fast.aclose()  # type: ignore[attr-defined]
    await service.fanout.close()


async def test_a_hub_joins_a_window_once_for_all_caught_up_streams_and_marks_laggards() -> None:
    queue: asyncio.Queue[Encoded] = asyncio.Queue()

    async def feed() -> AsyncIterator[Encoded]:
        while True:
            yield await queue.get()

    hub = Hub("t", feed, lambda _: None, Coalescing(0.001, 0.0, 0.001), heartbeat=0.05)
    hub.start()
    first, second, lagging = hub.add(100), hub.add(100), hub.add(2)
    for seq in (1, 2, 3):
        queue.put_nowait((seq, b"f%d" % seq))
    assert await first.wait() and await second.wait()
    (items, joined), (_, joined_again) = first.take(), second.take()
    assert [seq for seq, _ in items] == [1, 2, 3] and joined == b"f1f2f3"
    assert joined_again is joined  # one join for both streams
    assert lagging.overflowed and not first.overflowed  # 3 frames wait for a stream of capacity 2
    assert await first.wait() is False  # nothing new: a heartbeat is due after 0.05 s
    await hub.stop()
    assert Coalescing().window(10) == 0.005 and Coalescing().window(1000) == 0.01
    assert Coalescing().window(10_000) == 0.025


async def test_a_rollback_after_failover_tells_the_reader_to_read_again_from_the_first_replaced_seq(
    make_manager: Any,
) -> None:
    manager = await make_manager()
    session = await manager.create_session("alice")
    service = StreamService(manager)
    error = EventsRolledBackError("replaced", session_id=session, first_changed_seq=5, last_delivered_seq=8)
    chunk, _, final = await service._ending(session, error, 9)  # the hub's feed ended with this error
    body = json.loads(parse(chunk)[0]["data"])
    assert final and body["code"] == "events_rolled_back" and body["status"] == 409
    assert body["resume_from_seq"] == 5  # not 9: seqs 5..8 were sent, then replaced


async def test_a_gap_in_live_frames_is_filled_from_the_log_or_reported_as_trimmed(make_manager: Any) -> None:
    manager = await make_manager(max_events_per_session=10, checkpoint_interval=1000)
    session = await manager.create_session("alice")
    for n in range(4):
        await manager.emit_event(session, {"type": "modified", "data": {"n": n}}, "alice")
    service = StreamService(manager)
    five = b"id: 5\nevent: live\ndata: {}\n\n"
    chunk, next_seq = await service._fill(session, [(2, b"old"), (5, five)], 3)  # seq 2 was sent already
    assert [int(e["id"]) for e in parse(chunk)] == [3, 4, 5] and chunk.endswith(five) and next_seq == 6
    for n in range(40):  # the log now starts far past seq 6
        await manager.emit_event(session, {"type": "modified", "data": {"n": n}}, "alice")
    first = (await manager.get_events(session, 1, None, 1))[0].seq
    with pytest.raises(EventsTrimmedError):  # nothing of 6..first-2 is left: no silent skip, no endless loop
        await service._fill(session, [(first - 1, b"x")], 6)


async def test_a_reader_behind_trimming_gets_a_typed_error_event(make_manager: Any) -> None:
    manager = await make_manager(max_events_per_session=10, checkpoint_interval=1000)
    session = await manager.create_session("alice")
    for n in range(25):
        await manager.emit_event(session, {"type": "modified", "data": {"n": n}}, "alice")
    service = StreamService(manager)
    stream = service.session_events(session, 2)
    events = parse(await anext(stream))
    assert events[0]["event"] == "error"
    body = json.loads(events[0]["data"])
    assert body["code"] == "events_trimmed" and body["status"] == 410 and body["resume_from_seq"] == 2
    assert body["details"]["first_available"] > 2
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    await service.fanout.close()


def test_the_stream_limit_answers_503_with_retry_after(redis_server: EmbeddedRedis) -> None:
    server = ApiServer(redis_server.url, "--max-streams", "2", "--sse-heartbeat", "0.1")
    try:
        session = server.request("alice", "POST", "/v1/sessions", json={"agent_id": "alice"}).json()[
            "session_id"
        ]
        url = f"/v1/sessions/{session}/events/stream"
        with server.as_("observer") as one, server.as_("observer") as two:
            with one.stream("GET", url) as first, two.stream("GET", url) as second:
                assert first.status_code == second.status_code == 200
                refused = server.request("observer", "GET", url)
                assert refused.status_code == 503 and refused.json()["code"] == "too_many_streams"
                assert int(refused.headers["retry-after"]) >= 1
            # slots come back once the streams are closed
            server.wait_for(lambda: stream_status(server, url) == 200, "a stream slot to be free again")
    finally:
        assert server.stop() == 0


def stream_status(server: ApiServer, url: str) -> int:
    with server.as_("observer") as client, client.stream("GET", url) as response:
        return response.status_code


def test_sigterm_during_a_stream_and_writes_exits_zero_and_keeps_every_acknowledged_write(
    redis_server: EmbeddedRedis,
) -> None:
    server = ApiServer(redis_server.url, "--sse-heartbeat", "0.2")
    session = server.request("alice", "POST", "/v1/sessions", json={"agent_id": "alice"}).json()["session_id"]
    acknowledged: list[int] = []
    streamed: list[int] = []
    ending: list[tuple[str, dict[str, Any]]] = []
    stop_writing = threading.Event()

    def write() -> None:
        with httpx.Client(base_url=server.base, headers=auth("alice"), timeout=10) as client:
            n = 0
            while not stop_writing.is_set():
                try:
                    response = client.post(
                        f"/v1/sessions/{session}/events",
                        json={"type": "modified", "actor": "alice", "data": {"n": n}},
                    )
                except httpx.TransportError:
                    return  # the server stopped listening
                if response.status_code == 201:
                    acknowledged.append(response.json()["seq"])
                else:
                    assert response.status_code == 503, response.text  # refused while draining, never lost
                n += 1

    def read() -> None:
        with (
            httpx.Client(base_url=server.base, headers=auth("observer"), timeout=30) as client,
            connect_sse(client, "GET", f"/v1/sessions/{session}/events/stream") as source,
        ):
            for sse in source.iter_sse():
                if sse.event in ("shutdown", "error", "completed"):
                    ending.append((sse.event, json.loads(sse.data)))
                    return
                streamed.append(int(sse.id))

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    server.wait_for(lambda: len(acknowledged) >= 20 and len(streamed) >= 10, "writes and streamed events")
    code = server.stop(signal.SIGTERM)
    stop_writing.set()
    for thread in threads:
        thread.join(30)
    assert code == 0, server.stderr
    assert ending and ending[0][0] == "shutdown" and ending[0][1]["retry_ms"] > 0
    assert streamed == list(range(1, len(streamed) + 1))
    assert ending[0][1]["resume_from_seq"] == len(streamed) + 1

    async def stored() -> list[int]:
        config = SessionManagerConfig(redis_url=redis_server.url, namespace=server.namespace)
        async with SessionManager(config) as manager:
            return [e.seq for e in await manager.get_events(session)]

    seqs = asyncio.run(stored())
    assert set(acknowledged) <= set(seqs)  # every acknowledged write is stored
    assert seqs == list(range(1, len(seqs) + 1))


def test_without_tokens_serve_refuses_a_public_address(redis_server: EmbeddedRedis) -> None:
    import subprocess
    import sys

    env = {
        "HUDDLE_REDIS_URL": redis_server.url,
        "PATH": "/usr/bin:/bin",
        "HUDDLE_NAMESPACE": f"x{uuid.uuid4().hex[:6]}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "huddle", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "no API tokens are configured" in result.stderr and "Traceback" not in result.stderr
