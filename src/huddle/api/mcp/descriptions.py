"""What the model reads: the server's instructions and each tool's description (and whether it only reads)."""

from __future__ import annotations

INSTRUCTIONS = (
    "huddle shares work sessions between coding agents. Join a session, post what you change (post_event), "
    "report breakage with type 'broke' and fixes with 'fixed' (with a state transition), hand work over "
    "with handoff, and call wait_for_events to sleep until a collaborator writes. Your agent id is fixed by "
    "this server; you never pass it. Read the 'coordinate' prompt for the full routine."
)

TOOL_DESCRIPTIONS: dict[str, tuple[str, bool]] = {
    "create_session": (
        "Create a new shared work session; you become its first member. Returns session_id.",
        False,
    ),
    "join_session": (
        "Join an existing session as yourself. Returns last_seq: pass it to wait_for_events.",
        False,
    ),
    "leave_session": ("Leave a session when your part is done.", False),
    "list_sessions": (
        "List live sessions (yours or all), most recently active first, paged by offset.",
        True,
    ),
    "get_session": ("Get a session's document: state, members, last seq, last checkpoint, expiry.", True),
    "post_event": (
        "Post what you did or found to a session. Use type 'modified' for changes, 'broke' when something "
        "broke (with from_state=<current state, 'working' in a new session>, to_state='broken'), 'fixed' when "
        "it works again (from_state='broken', to_state='working'), 'test_pass' for green tests. A transition whose from_state "
        "is not the current state is refused (state_conflict): read the session and retry. Returns seq.",
        False,
    ),
    "handoff": ("Hand work over to another agent with a note; they see it in their wait_for_events.", False),
    "read_events": (
        "Read a session's events after after_seq (oldest first, at most limit). Page on with after_seq=last_seq "
        "while has_more is true.",
        True,
    ),
    "wait_for_events": (
        "Sleep until another agent posts to the session after after_seq (or timeout_s passes, max 60 s), "
        "then return the new events. Use it instead of polling. On timeout, events is empty; call again "
        "with after_seq=last_seq.",
        True,
    ),
    "checkpoint": ("Store a checkpoint of the session (state, members) to return to later.", False),
    "complete_session": ("Mark the session completed when the shared work is finished.", False),
    "list_failures": ("List failure snapshots (copies taken when a session broke), newest first.", True),
}
