"""The ``coordinate`` prompt: how an agent works with others in a huddle session."""

from __future__ import annotations

ROUTINE = """\
You are working with other coding agents in a shared huddle session{where}. huddle records who did what, in
order, so every agent sees the same history. Your agent id is fixed by the server: never try to pass one.

1. Start: {start} Remember `last_seq` from the reply.
2. Catch up: `read_events(session_id, after_seq=0)` (page on with after_seq=last_seq while has_more) to see
   what the others did and what state the session is in (`get_session`).
3. Announce work before you start it: `post_event(type="modified", element_type=..., operation=...,
   entity_ids=[...], description=...)` so nobody edits the same thing at the same time.
4. Report breakage and fixes with state transitions so everyone sees the session's health:
   - something broke: `post_event(type="broke", from_state="working", to_state="broken", confidence=0.8,
     description=...)` (from_state is the session's current state; new sessions start in "working")
   - you fixed it: `post_event(type="fixed", from_state="broken", to_state="working", description=...)`
   A transition is refused with `state_conflict` when from_state is not the current state: call
   `get_session`, then decide again.
   Green tests: `post_event(type="test_pass", entity_ids=[...])`.
5. Hand work over explicitly: `handoff(to_agent="<agent id>", note="what is done, what is left, where to
   look")`, then wait.
6. Wait for collaborators instead of polling: `wait_for_events(session_id, after_seq=<last seq you saw>,
   timeout_s=60, types=[...optional])`. It returns as soon as another agent writes; on timeout `events` is
   empty: call it again with after_seq=last_seq.
7. Take a `checkpoint` before risky changes; `leave_session` when your part is done; `complete_session`
   when the whole task is finished.
Tool errors start with a stable code (session_not_found, not_a_member, state_conflict, redis_unavailable,
...): not_a_member means join first; redis_unavailable means retry in a few seconds.
"""


def coordinate(session_id: str | None = None) -> str:
    """Instructions for an agent joining a huddle session (optionally a given one)."""
    if session_id:
        return ROUTINE.format(where=f" ({session_id})", start=f'`join_session(session_id="{session_id}")`.')
    return ROUTINE.format(
        where="",
        start="`list_sessions()` to find yours, then `join_session`, or `create_session` for new work.",
    )
