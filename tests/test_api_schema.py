"""schemathesis against ``/openapi.json`` of a real ``huddle serve`` (admin token): no 5xx, responses match.

Bounded: 6 examples per operation (tests/test_fuzz_http.py fuzzes every role and linked sequences) (the streams, which never end by themselves, are left out)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from api_support import ApiServer, auth
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from huddle import EmbeddedRedis

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def schema_server(redis_server: EmbeddedRedis) -> Iterator[ApiServer]:
    server = ApiServer(redis_server.url)
    for agent in ("alice", "bob"):  # something for the generated requests to find
        server.request(
            "admin", "POST", "/v1/sessions", json={"agent_id": agent, "session_id": f"known-{agent}"}
        )
    yield server
    assert server.stop() == 0


def test_no_server_error_and_every_response_matches_the_schema(schema_server: ApiServer) -> None:
    loaded = schemathesis.openapi.from_url(f"{schema_server.base}/openapi.json")
    loaded.config.update(base_url=schema_server.base)
    operations = [
        result.ok()  # type: ignore[union-attr]
        for result in loaded.exclude(path_regex=r".*/stream$").get_all_operations()
    ]
    assert len(operations) >= 20
    failures: list[str] = []
    calls = 0
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=6, deadline=None, phases=[Phase.explicit, Phase.generate], database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(headers=auth("admin"), checks=CHECKS)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    print(f"schemathesis: {calls} requests over {len(operations)} operations")
    assert calls >= 100  # generated requests really went out
