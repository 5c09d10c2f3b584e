"""Event models: camelCase and snake_case, and a stored event reads back exactly as submitted."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from huddle import SessionEvent
from huddle.core.store import parse_event

names = st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True)
text = st.text(max_size=50)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=10,
)

events = st.fixed_dictionaries(
    {"type": names},
    optional={
        "change_info": st.fixed_dictionaries(
            {
                "element_type": st.text(min_size=1, max_size=20),
                "entity_ids": st.lists(text, max_size=5),
                "operation": st.text(min_size=1, max_size=20),
            }
        ),
        "state_transition": st.fixed_dictionaries(
            {"from": names, "to": names},
            optional={"verified_by": text, "confidence": st.floats(0, 1), "critical_change": st.booleans()},
        ),
        "impact": st.fixed_dictionaries(
            {},
            optional={
                "severity": st.sampled_from(["low", "medium", "high", "critical"]),
                "tests_failed": st.lists(text, max_size=3),
            },
        ),
        "data": st.dictionaries(text, json_values, max_size=5),
    },
)


@settings(max_examples=300, deadline=None)
@given(events)
def test_a_stored_event_reads_back_as_submitted(raw: dict[str, Any]) -> None:
    submitted = SessionEvent.model_validate(raw)
    fields = {"t": submitted.type, "a": "agent-1", "ts": "1700000000123", "d": submitted.payload_json()}
    stored = parse_event("s-1", "0-7", fields)
    assert stored.seq == 7 and stored.actor == "agent-1" and stored.type == submitted.type
    assert stored.change_info == submitted.change_info
    assert stored.state_transition == submitted.state_transition
    assert stored.impact == submitted.impact
    assert stored.data == submitted.data


def test_camel_and_snake_case_give_the_same_event() -> None:
    camel = SessionEvent.model_validate(
        {
            "type": "broke",
            "changeInfo": {"elementType": "test", "entityIds": ["a"], "operation": "failed"},
            "stateTransition": {"from": "working", "to": "broken", "verifiedBy": "ci", "confidence": 0.5},
            "impact": {"testsFailed": ["t1"], "perfDelta": 1.5},
        }
    )
    snake = SessionEvent.model_validate(
        {
            "type": "broke",
            "change_info": {"element_type": "test", "entity_ids": ["a"], "operation": "failed"},
            "state_transition": {
                "from_state": "working",
                "to": "broken",
                "verified_by": "ci",
                "confidence": 0.5,
            },
            "impact": {"tests_failed": ["t1"], "perf_delta": 1.5},
        }
    )
    assert camel == snake
