"""The web console in a real headless Chromium against a real ``huddle serve`` and Redis.

A writer in another process changes sessions through the library; the browser must show it without a reload.
Screenshots of each page go to docs/images/ (committed, shown in the README)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_support.browser import Browser, why_no_browser
from ui_support.client import WriterProcess
from ui_support.server import ConsoleServer

from huddle import EmbeddedRedis

NO_BROWSER = why_no_browser()
pytestmark = pytest.mark.skipif(NO_BROWSER is not None, reason=f"browser tests need Chromium: {NO_BROWSER}")

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
XSS = ["<img src=x onerror=alert(1)>", "</script><script>alert(2)</script>"]


def modified(*entities: str, description: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"element_type": "file", "entity_ids": list(entities), "operation": "modified"}
    if description is not None:
        info["description"] = description
    return {"type": "modified", "change_info": info}


def transition(kind: str, from_state: str, to: str, *entities: str) -> dict[str, Any]:
    return {
        "type": kind,
        "change_info": {"element_type": "test", "entity_ids": list(entities), "operation": kind},
        "state_transition": {"from": from_state, "to": to},
    }


@pytest.fixture(scope="module")
def server(redis_server: EmbeddedRedis) -> Iterator[ConsoleServer]:
    served = ConsoleServer(redis_server.url, f"ui{uuid.uuid4().hex[:8]}")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def writer(redis_server: EmbeddedRedis, server: ConsoleServer) -> Iterator[WriterProcess]:
    process = WriterProcess(redis_server.url, server.namespace)
    yield process
    process.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    opened = Browser()
    yield opened
    opened.close()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def screenshot(browser: Browser, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    browser.screenshot(str(IMAGES / name))


def event_rows(browser: Browser) -> list[dict[str, Any]]:
    """Rendered timeline rows with an event: seq, actor, type, lane holding the card, card text."""
    return list(
        browser.js(
            """return [...document.querySelectorAll('.tl-row[data-type]')].map(row => {
                 const card = row.querySelector('.ev');
                 return {seq: Number(row.dataset.seq), actor: row.dataset.actor, type: row.dataset.type,
                         lane: card.closest('.tl-lane').dataset.lane, text: card.textContent};
               });"""
        )
    )


def test_sessions_page_shows_a_session_another_process_creates(
    server: ConsoleServer, writer: WriterProcess, browser: Browser
) -> None:
    browser.get(server.url("/ui/"))
    browser.wait_until(
        lambda: browser.js("return document.getElementById('sessions-body') !== null"), "the page"
    )
    session_id = new_id("triage")
    writer.do("create", session_id=session_id, agent_id="alice", metadata={"task": "flaky login test"})
    writer.do("join", session_id=session_id, agent_id="bob")
    row = f"tr[data-session='{session_id}']"
    browser.wait_until(lambda: browser.texts(row), "the new session's row (lifecycle stream)")
    browser.wait_until(lambda: "bob" in browser.texts(f"{row} td.agents")[0], "bob in the agents column")
    assert browser.texts(f"{row} .badge") == ["working"]
    other = new_id("refactor")
    writer.do("create", session_id=other, agent_id="carol")
    writer.do(
        "emit", session_id=other, actor="carol", events=[transition("broke", "working", "broken", "auth.py")]
    )
    badge = f"tr[data-session='{other}'] .badge"
    browser.wait_until(
        lambda: (texts := browser.texts(badge)) and texts[0].startswith("broken since"),
        "the broken badge (refresh)",
    )
    screenshot(browser, "console-sessions.png")
    assert browser.alert_text() is None

    browser.get(server.url("/ui/?agent=carol"))  # filters come from the URL and go to the API
    browser.wait_until(lambda: browser.texts(f"tr[data-session='{other}']"), "carol's session")
    assert browser.js(
        "return [...document.querySelectorAll('#sessions-body tr')].map(r => r.dataset.session)"
    ) == [other]
    browser.get(server.url("/ui/?state=working"))
    browser.wait_until(lambda: browser.texts(f"tr[data-session='{session_id}']"), "the working session")
    assert browser.texts(f"tr[data-session='{other}']") == []


def test_session_page_shows_events_live_in_order_with_one_lane_per_agent(
    server: ConsoleServer, writer: WriterProcess, browser: Browser
) -> None:
    session_id = new_id("fix")
    writer.do("create", session_id=session_id, agent_id="alice")
    writer.do("join", session_id=session_id, agent_id="bob")
    browser.get(server.url(f"/ui/sessions/{session_id}"))
    browser.wait_until(lambda: len(event_rows(browser)) == 2, "start and join rows")
    browser.js("window.__sameDocument = 'yes';")  # a reload would lose this
    browser.wait_until(
        lambda: browser.js("return document.getElementById('conn').dataset.state") == "live", "stream"
    )

    writer.do(
        "emit", session_id=session_id, actor="alice", events=[modified("api/login.py", "api/session.py")]
    )
    writer.do(
        "emit",
        session_id=session_id,
        actor="alice",
        events=[transition("broke", "working", "broken", "t_login")],
    )
    writer.do(
        "emit",
        session_id=session_id,
        actor="bob",
        events=[transition("fixed", "broken", "working", "t_login")],
    )
    writer.do("emit", session_id=session_id, actor="bob", events=[{"type": "test_pass"}])
    writer.do(
        "emit",
        session_id=session_id,
        actor="bob",
        events=[{"type": "handoff", "data": {"to_agent": "alice"}}],
    )
    rows = browser.wait_until(lambda: (r := event_rows(browser)) and len(r) == 7 and r, "seven rows")

    assert browser.js("return window.__sameDocument") == "yes"
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["type"] for r in rows] == [
        "start",
        "join",
        "modified",
        "broke",
        "fixed",
        "test_pass",
        "handoff",
    ]
    for r in rows:  # seq, actor, type and entity ids are visible text, in the actor's own lane
        assert r["lane"] == r["actor"]
        assert f"#{r['seq']}" in r["text"] and r["actor"] in r["text"] and r["type"] in r["text"]
    assert "api/login.py, api/session.py" in rows[2]["text"]
    broke, fixed = rows[3], rows[4]
    assert broke["lane"] == "alice" and "working → broken" in broke["text"] and "t_login" in broke["text"]
    assert fixed["lane"] == "bob" and "broken → working" in fixed["text"]
    assert rows[6]["lane"] == "bob" and "→ alice" in rows[6]["text"]
    assert browser.js(
        "return document.querySelector('.tl-row[data-seq=\"5\"] .ev').classList.contains('to-ok')"
    )
    browser.wait_until(lambda: browser.texts("#session-state .badge") == ["working"], "the state badge")

    browser.wait_until(lambda: browser.texts("#snapshots button"), "the failure snapshot of the broke event")
    browser.wait_until(
        lambda: browser.texts(".tl-row[data-seq='4'] .mark-snapshot"), "the snapshot mark on seq 4"
    )
    browser.js("document.querySelector('.tl-row[data-seq=\"4\"] .ev').click();")
    assert '"to": "broken"' in browser.texts("#detail")[0]
    screenshot(browser, "console-session.png")


def test_timeline_follows_the_tail_unless_scrolled_up_and_opens_checkpoints(
    server: ConsoleServer, writer: WriterProcess, browser: Browser
) -> None:
    session_id = new_id("tail")
    writer.do("create", session_id=session_id, agent_id="alice")
    last = writer.do(
        "emit", session_id=session_id, actor="alice", events=[modified(f"m{i}.py") for i in range(80)]
    )
    browser.get(server.url(f"/ui/sessions/{session_id}"))
    at_bottom = "const t = document.getElementById('timeline'); return t.scrollTop + t.clientHeight >= t.scrollHeight - 2;"
    browser.wait_until(lambda: browser.texts(f".tl-row[data-seq='{last['seqs'][-1]}']"), "the last row")
    assert browser.js(at_bottom)
    browser.wait_until(
        lambda: browser.js("return document.getElementById('conn').dataset.state") == "live", "stream"
    )

    browser.js("document.getElementById('timeline').scrollTop = 0;")
    browser.wait_until(
        lambda: browser.js("return !document.getElementById('follow').hidden"), "the Follow button"
    )
    newer = writer.do("emit", session_id=session_id, actor="alice", events=[modified("late.py")])["seqs"][0]
    browser.wait_until(
        lambda: f"seq 1\u2013{newer}" in browser.texts("#timeline-info")[0], "the new event counted"
    )
    assert browser.js("return document.getElementById('timeline').scrollTop") == 0  # left where the reader is
    browser.js("document.getElementById('follow').click();")
    browser.wait_until(
        lambda: browser.texts(f".tl-row[data-seq='{newer}']") and browser.js(at_bottom), "the tail"
    )

    browser.wait_until(lambda: browser.texts("#checkpoints button"), "the automatic checkpoints")
    browser.js("document.querySelector('#checkpoints button').click();")
    browser.wait_until(lambda: '"checkpoint_id"' in browser.texts("#detail")[0], "the checkpoint's JSON")


def test_the_timeline_resumes_after_a_server_restart_without_gaps_or_duplicates(
    redis_server: EmbeddedRedis, browser: Browser
) -> None:
    first = ConsoleServer(redis_server.url, f"uirs{uuid.uuid4().hex[:8]}")
    writer = WriterProcess(redis_server.url, first.namespace)
    second: ConsoleServer | None = None
    try:
        session_id = new_id("restart")
        writer.do("create", session_id=session_id, agent_id="alice")
        writer.do("emit", session_id=session_id, actor="alice", events=[modified("a.py")])
        browser.get(first.url(f"/ui/sessions/{session_id}"))
        browser.wait_until(lambda: len(event_rows(browser)) == 2, "the first rows")
        browser.wait_until(
            lambda: browser.js("return document.getElementById('conn').dataset.state") == "live", "live"
        )
        browser.js("window.__sameDocument = 'yes';")
        assert first.stop() == 0  # SIGTERM: the stream ends with a shutdown frame and a retry hint
        writer.do(
            "emit", session_id=session_id, actor="alice", events=[modified(f"down{i}.py") for i in range(3)]
        )
        second = ConsoleServer(redis_server.url, first.namespace, port=first.port)
        writer.do("emit", session_id=session_id, actor="alice", events=[modified("back.py")])
        rows = browser.wait_until(
            lambda: (r := event_rows(browser)) and len(r) >= 6 and r, "the rows after restart"
        )
        assert [r["seq"] for r in rows] == [
            1,
            2,
            3,
            4,
            5,
            6,
        ]  # Last-Event-ID resume: each event once, in order
        assert browser.js("return window.__sameDocument") == "yes"
    finally:
        writer.close()
        first.stop()
        if second is not None:
            second.stop()


def test_the_stream_parser_handles_split_chunks_crlf_comments_and_multiline_data(
    server: ConsoleServer, browser: Browser
) -> None:
    browser.get(server.url("/ui/login"))
    frames = browser.driver.execute_async_script(
        r"""const done = arguments[arguments.length - 1];
           import(arguments[0]).then(({ FrameParser }) => {
             const frames = [];
             const parser = new FrameParser((f) => frames.push(f));
             for (const chunk of [": heartbeat\n\nid: 7\r\nevent: bro", "ke\r\ndata: {\"a\":", "1}\r\n\r\n",
                                  "data: line one\ndata: line two\n\nretry: 250\n", "\n"]) parser.push(chunk);
             done({ frames, retry: parser.retry });
           });""",
        server.url("/ui/static/js/lib/sse.js"),
    )
    assert frames["frames"] == [
        {"id": "7", "event": "broke", "data": '{"a":1}'},
        {"id": None, "event": "message", "data": "line one\nline two"},
    ]


def test_agent_written_markup_renders_as_inert_text(
    server: ConsoleServer, writer: WriterProcess, browser: Browser
) -> None:
    session_id = new_id("xss")
    writer.do("create", session_id=session_id, agent_id="mallory", metadata={"note": XSS[1]})
    event = modified(*XSS, description=XSS[0])
    event["data"] = {"html": XSS[1]}
    writer.do("emit", session_id=session_id, actor="mallory", events=[event])
    browser.get(server.url(f"/ui/sessions/{session_id}"))
    browser.wait_until(lambda: len(event_rows(browser)) == 2, "both rows")
    browser.js("document.querySelector('.tl-row[data-seq=\"2\"] .ev').click();")
    time.sleep(0.5)  # give an injected handler the chance to run (it must not)

    assert browser.alert_text() is None
    assert browser.js("return document.querySelectorAll('img').length") == 0
    assert browser.js("return document.scripts.length") == 1  # only the page's own module
    card = event_rows(browser)[1]["text"]
    assert XSS[0] in card and XSS[1] in card
    detail = browser.texts("#detail")[0]
    assert XSS[0] in detail and XSS[1] in detail
    assert XSS[1] in browser.texts("#session-summary")[0]
    browser.get(server.url("/ui/"))
    browser.wait_until(lambda: browser.texts(f"tr[data-session='{session_id}']"), "the sessions row")
    assert browser.alert_text() is None and browser.js("return document.querySelectorAll('img').length") == 0


def test_replay_to_the_end_shows_the_state_get_session_returns(
    server: ConsoleServer, writer: WriterProcess, browser: Browser
) -> None:
    session_id = new_id("replay")
    writer.do("create", session_id=session_id, agent_id="alice", metadata={"ticket": "HUD-15"})
    writer.do("join", session_id=session_id, agent_id="bob")
    writer.do(
        "emit", session_id=session_id, actor="alice", events=[modified("core.py"), modified("store.py")]
    )
    writer.do(
        "emit", session_id=session_id, actor="alice", events=[transition("broke", "working", "broken", "t1")]
    )
    writer.do(
        "emit", session_id=session_id, actor="bob", events=[transition("fixed", "broken", "working", "t1")]
    )
    writer.do("join", session_id=session_id, agent_id="carol")
    replay_id = writer.do("record", session_id=session_id)["replay_id"]
    document = writer.do("get", session_id=session_id)

    browser.get(server.url(f"/ui/replays/{replay_id}"))
    browser.wait_until(
        lambda: browser.js("return document.getElementById('verify').dataset.ok") == "true", "verify"
    )
    browser.wait_until(lambda: browser.texts("#frames li"), "the first frames")
    browser.js("document.getElementById('to-end').click();")
    browser.wait_until(
        lambda: browser.js("return document.getElementById('cursor').dataset.atEnd") == "true",
        "the last frame",
    )
    shown = dict(
        browser.js(
            "return [...document.querySelectorAll('#state dd')].map(d => [d.dataset.key, d.textContent])"
        )
    )
    assert int(shown["seq"]) == document["last_seq"]
    assert shown["state"] == document["state"]
    assert shown["status"] == document["status"]
    assert set(shown["agents"].split(", ")) == set(document["agents"])
    assert shown["metadata"] == '{"ticket":"HUD-15"}' and document["metadata"] == {"ticket": "HUD-15"}
    screenshot(browser, "console-replay.png")

    browser.js("document.getElementById('filter-agent').value = 'alice,bob';")
    browser.js("document.getElementById('filter-agent').dispatchEvent(new Event('change'));")
    browser.js("document.getElementById('speed').value = '10';")
    browser.js(
        "document.getElementById('scrub').value = '0'; document.getElementById('scrub').dispatchEvent(new Event('input'));"
    )
    browser.wait_until(
        lambda: browser.js("return document.getElementById('cursor').dataset.index") == "0", "frame 1"
    )
    assert "carol" not in " ".join(browser.texts("#frames li .ev-actor"))
    browser.js("document.getElementById('play').click();")
    browser.wait_until(
        lambda: browser.js("return document.getElementById('play').textContent") == "Play", "playback to stop"
    )
    shown = dict(
        browser.js(
            "return [...document.querySelectorAll('#state dd')].map(d => [d.dataset.key, d.textContent])"
        )
    )
    assert shown["seq"] == "6" and shown["state"] == "working"  # bob's fix: the last frame by alice or bob

    frames = server.client.get(
        f"/v1/replays/{replay_id}/frames", params={"from_index": 0, "limit": 10}
    ).json()
    broke_at = next(f["at"] for f in frames["frames"] if f["event"]["type"] == "broke")
    # The first frame at or after that time (an earlier event may share its millisecond).
    expected = next(f for f in frames["frames"] if f["at"] >= broke_at)
    browser.js("document.getElementById('seek-time').value = arguments[0];", broke_at)
    browser.js("document.getElementById('seek').requestSubmit();")
    browser.wait_until(
        lambda: browser.texts("#state dd[data-key='seq']") == [str(expected["seq"])], "the frame at that time"
    )
    assert browser.texts("#state dd[data-key='state']") == [expected["state"]["state"]]
    browser.js("document.getElementById('filter-agent').value = '';")
    browser.js("document.getElementById('filter-agent').dispatchEvent(new Event('change'));")
    browser.js(
        "document.getElementById('speed').value = '0'; document.getElementById('play').click();"
    )  # instant
    browser.wait_until(
        lambda: browser.js("return document.getElementById('cursor').dataset.atEnd") == "true",
        "the end, instantly",
    )


def test_health_page_draws_components_charts_and_analytics(
    server: ConsoleServer, writer: WriterProcess, browser: Browser
) -> None:
    session_id = new_id("health")
    writer.do("create", session_id=session_id, agent_id="dana")
    writer.do("emit", session_id=session_id, actor="dana", events=[modified("README.md")])
    # Writes through the server's own API are what its performance windows measure.
    http_session = server.client.post("/v1/sessions", json={"agent_id": "erin"}).json()["session_id"]
    for i in range(20):
        posted = server.client.post(
            f"/v1/sessions/{http_session}/events", json={**modified(f"h{i}.py"), "actor": "erin"}
        )
        assert posted.status_code == 201
    browser.get(server.url("/ui/health"))
    browser.wait_until(
        lambda: browser.texts(".component[data-component='redis'] .badge"), "the redis component"
    )
    levels = {"healthy", "warning", "critical", "down"}  # the level itself depends on the machine's load
    assert set(browser.texts(".component[data-component='redis'] .badge")) <= levels
    browser.wait_until(
        lambda: browser.js("return document.querySelectorAll('#chart-throughput polyline').length"), "chart"
    )
    browser.wait_until(
        lambda: browser.js("return document.querySelectorAll('#chart-workload rect').length"), "bars"
    )
    active = browser.wait_until(
        lambda: browser.texts("#analytics dd[data-key='active sessions']"), "analytics"
    )
    assert int(active[0]) >= 1
    browser.wait_until(
        lambda: browser.js("return document.querySelectorAll('#chart-latency polyline').length"), "latency"
    )
    time.sleep(5.5)  # a second metrics sample, so the lines have two points in the screenshot
    browser.driver.set_window_size(1400, 1250)  # the whole page in one picture
    try:
        screenshot(browser, "console-health.png")
    finally:
        browser.driver.set_window_size(1400, 900)


def test_pages_run_without_csp_violations_or_script_errors(
    server: ConsoleServer, writer: WriterProcess, browser: Browser
) -> None:
    session_id = new_id("clean")
    writer.do("create", session_id=session_id, agent_id="alice")
    writer.do(
        "emit", session_id=session_id, actor="alice", events=[transition("broke", "working", "broken", "x")]
    )
    replay_id = writer.do("record", session_id=session_id)["replay_id"]
    browser.console_errors()  # drop what earlier tests logged
    pages = [
        "/ui/",
        f"/ui/sessions/{session_id}",
        "/ui/replays",
        f"/ui/replays/{replay_id}",
        "/ui/health",
        "/ui/login",
    ]
    for path in pages:
        browser.get(server.url(path))
        time.sleep(0.5)
    assert browser.console_errors() == []


def test_report_time_to_first_render_of_a_10000_event_session(
    server: ConsoleServer, redis_server: EmbeddedRedis, browser: Browser
) -> None:
    big = WriterProcess(redis_server.url, server.namespace, max_events_per_session=20_000)  # keep all 10,000
    try:
        render_big_session(server, big, browser)
    finally:
        big.close()


def render_big_session(server: ConsoleServer, writer: WriterProcess, browser: Browser) -> None:
    session_id = new_id("big")
    writer.do("create", session_id=session_id, agent_id="alice")
    writer.do("join", session_id=session_id, agent_id="bob")
    for batch in range(20):
        actor = "alice" if batch % 2 == 0 else "bob"
        writer.do(
            "emit",
            session_id=session_id,
            actor=actor,
            events=[modified(f"f{batch}_{i}.py") for i in range(500)],
        )
    document = writer.do("get", session_id=session_id)
    last_seq, target = document["last_seq"], 17
    assert document["first_seq"] == 1
    assert last_seq >= 10_002  # plus the automatic checkpoints
    browser.get(server.url(f"/ui/sessions/{session_id}"))
    first_render = browser.wait_until(
        lambda: browser.js("return document.getElementById('timeline').dataset.firstRenderMs"),
        "the first render",
    )
    rows = event_rows(browser)
    assert rows and rows[-1]["seq"] == last_seq and len(rows) < 200  # the tail, virtualized
    started = time.perf_counter()
    browser.js(
        "document.getElementById('jump-seq').value = arguments[0]; document.getElementById('jump').requestSubmit();",
        str(target),
    )
    browser.wait_until(
        lambda: target in [r["seq"] for r in event_rows(browser)], "the target seq after the jump"
    )
    jump_ms = (time.perf_counter() - started) * 1000
    print(
        f"\n10,000-event session: first render {first_render} ms after navigation start; {len(rows)} rows in the DOM;"
        f" jump to seq {target} {jump_ms:.0f} ms"
    )


def test_with_tokens_the_console_asks_for_one_and_keeps_it_from_scripts(
    redis_server: EmbeddedRedis, browser: Browser
) -> None:
    token = f"observer-{uuid.uuid4().hex}"
    guarded = ConsoleServer(
        redis_server.url, f"uitok{uuid.uuid4().hex[:8]}", env={"HUDDLE_API_TOKENS": f"observer={token}"}
    )
    writer = WriterProcess(redis_server.url, guarded.namespace)
    try:
        session_id = new_id("guarded")
        writer.do("create", session_id=session_id, agent_id="alice")
        browser.get(guarded.url("/ui/"))
        browser.wait_until(lambda: "needs a token" in browser.texts("#banner")[0], "the sign-in banner")
        assert browser.texts("#sessions-body tr") == []
        browser.js("document.querySelector('#banner a').click();")
        browser.wait_until(lambda: browser.js("return location.pathname") == "/ui/login", "the sign-in page")
        screenshot(browser, "console-login.png")
        browser.js(
            "document.getElementById('token').value = arguments[0]; document.getElementById('login-form').submit();",
            token,
        )
        browser.wait_until(
            lambda: browser.texts(f"tr[data-session='{session_id}']"), "the sessions, signed in"
        )
        assert browser.js("return location.pathname") == "/ui/"
        assert browser.js("return document.cookie") == ""  # HttpOnly: no page script can read the token
        assert token not in browser.driver.page_source
        cookie = browser.driver.get_cookie("huddle_token")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    finally:
        browser.driver.delete_all_cookies()
        writer.close()
        guarded.stop()
