"""HTTP API fuzz with schemathesis against a real ``huddle serve``, with a token of each role (admin, agent,
observer, none): every operation with positive and negative data, then stateful sequences over the links
schemathesis infers. No 5xx, every response matches the schema, every error is problem+json with a huddle
code, and a mutation refused with a 4xx changes nothing in Redis (see ``http_fuzz_support``).

``HUDDLE_FUZZ_HTTP_EXAMPLES`` sets the examples per operation for admin and agent (default 4; writes twice, fewer for
observer and no token: ~300 requests);
``benchmarks/fuzz_http.py`` runs thousands."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from api_support import ApiServer
from http_fuzz_support import ROLES, HttpFuzz, seed

from huddle import EmbeddedRedis

EXAMPLES = int(os.environ.get("HUDDLE_FUZZ_HTTP_EXAMPLES", "4"))


@pytest.fixture(scope="module")
def campaign(redis_server: EmbeddedRedis) -> Iterator[HttpFuzz]:
    server = ApiServer(redis_server.url)
    seed(server)
    fuzz = HttpFuzz(server, redis_server.url)
    yield fuzz
    fuzz.close()
    assert server.stop() == 0


def test_every_operation_and_role_gets_a_conforming_answer(campaign: HttpFuzz) -> None:
    campaign.per_operation(EXAMPLES)
    print(f"schemathesis per operation: {campaign.requests} requests", campaign.table(), sep="\n")
    assert not campaign.failures, "\n\n".join(campaign.failures.values())
    assert len(campaign.operations) >= 20
    assert {role for _, role in campaign.tried} == set(ROLES)
    assert campaign.requests >= len(campaign.operations) * 2 * min(EXAMPLES, 3)
    # The refusals were reached, not only 404s: each role met its own kind of answer.
    assert {200, 201, 401, 403, 404, 422} <= set(campaign.statuses), campaign.statuses


def test_appends_built_from_the_event_model_get_conforming_answers(campaign: HttpFuzz) -> None:
    before = dict(campaign.accepted)
    campaign.appends(EXAMPLES * 10)
    label = "POST /v1/sessions/{session_id}/events"
    accepted = {
        role: campaign.accepted[(label, role)] - before.get((label, role), 0) for role in ("alice", "admin")
    }
    print(f"model-built appends: {accepted} accepted")
    assert not campaign.failures, "\n\n".join(campaign.failures.values())
    assert all(n > 0 for n in accepted.values()), (
        accepted
    )  # the append path itself was reached, not only refusals


def test_linked_sequences_get_conforming_answers(campaign: HttpFuzz) -> None:
    before = campaign.requests
    links = campaign.stateful("admin", examples=max(EXAMPLES * 3, 5), steps=6)
    links = max(links, campaign.stateful("alice", examples=max(EXAMPLES * 2, 3), steps=6))
    print(f"schemathesis stateful: {campaign.requests - before} requests over {links} links")
    assert links > 0, "schemathesis inferred no links between operations"
    assert not campaign.failures, "\n\n".join(campaign.failures.values())
    assert campaign.requests - before >= 10
