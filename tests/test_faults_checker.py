"""The history checker and the fault proxy themselves: the checker catches each kind of violation, and the
proxy really breaks a connection (so a clean fault run means something)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from reliability.history import CallRecord, check_history
from reliability.proxy import FaultProxy

from huddle import EmbeddedRedis, Event

NOW = datetime.now(UTC)


def _event(seq: int, key: str | None, type_: str = "modified") -> Event:
    return Event(
        session_id="s", seq=seq, type=type_, actor="w", timestamp=NOW, data={"key": key} if key else None
    )


def _log(*keys: str | None) -> list[Event]:
    return [_event(1, None, "start")] + [_event(i + 2, key) for i, key in enumerate(keys)]


def test_a_clean_history_has_no_problem() -> None:
    records = [CallRecord("w", "a", 1, 2), CallRecord("w", "b", 3, 3, ["RedisUnavailableError"] * 2)]
    report = check_history(records, _log("a", "b"), last_seq=3, subscriber=_log("a", "b"))
    assert report.problems == [] and report.acknowledged == 2 and report.retried == 1


def test_the_checker_reports_a_doubled_event() -> None:
    report = check_history([CallRecord("w", "a", 2, 2)], _log("a", "a"), last_seq=3)
    assert report.doubled == 1 and report.problems


def test_the_checker_reports_a_lost_acknowledged_event() -> None:
    report = check_history([CallRecord("w", "a", 1, 2), CallRecord("w", "b", 1, 3)], _log("a"), last_seq=2)
    assert report.lost == 1 and report.problems


def test_the_checker_counts_loss_without_failing_when_loss_is_allowed() -> None:
    records = [CallRecord("w", "a", 1, 2), CallRecord("w", "b", 1, 3)]
    report = check_history(records, _log("a"), last_seq=2, allow_loss=True)
    assert report.lost == 1 and report.problems == []


def test_the_checker_reports_a_gap_and_a_wrong_seq() -> None:
    events = [_event(1, None, "start"), _event(3, "a")]
    report = check_history([CallRecord("w", "a", 1, 2)], events, last_seq=3)
    assert any("gapless" in p for p in report.problems)
    assert any("acknowledged as seq 2 but stored at [3]" in p for p in report.problems)


def test_the_checker_reports_a_subscriber_that_skipped_or_repeated() -> None:
    log = _log("a", "b")
    skipped = check_history([], log, last_seq=3, subscriber=[log[0], log[2]])
    repeated = check_history([], log, last_seq=3, subscriber=[log[0], log[1], log[1], log[2]])
    assert skipped.problems and repeated.problems


def test_an_errored_call_stored_once_is_allowed_but_counted() -> None:
    report = check_history(
        [CallRecord("w", "a", 12, None, ["RedisUnavailableError"] * 12)], _log("a"), last_seq=2
    )
    assert report.problems == [] and report.errored_but_stored == 1


async def test_the_proxy_cuts_a_reply_and_the_client_sees_it() -> None:
    with EmbeddedRedis() as server, FaultProxy(server.port) as proxy:
        client = aioredis.Redis.from_url(proxy.url, retry_on_error=[], socket_timeout=2)
        try:
            assert await client.ping()
            await client.set("k", "x" * 10_000)
            proxy.inject("cut_reply")
            with pytest.raises(RedisConnectionError):
                await client.get("k")
            assert proxy.stats.applied["cut_reply"] == 1
        finally:
            await client.aclose()
