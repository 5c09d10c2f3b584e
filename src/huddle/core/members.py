"""LocalMembers: the sessions (and agents) a manager joined, which a graceful shutdown checkpoints."""

from __future__ import annotations

import logging

log = logging.getLogger("huddle.core.manager")

DEFAULT_LIMIT = 100_000


class LocalMembers(dict[str, set[str]]):
    """Session id -> agents of this process that joined it, least recently joined first.

    Entries go when the last local agent leaves, when this manager completes the session, when a call finds it
    gone, and when ``perform_maintenance`` finds it completed or expired. Bounded: past ``limit`` sessions the
    least recently joined one is dropped (a long-lived manager must not grow with every session it ever saw)."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        super().__init__()
        self.limit = limit
        self.evicted = 0
        """Sessions dropped because the bound was reached (they are not checkpointed at shutdown)."""

    def add(self, session_id: str, agent_id: str) -> None:
        """Record that ``agent_id`` joined ``session_id`` through this manager (it becomes the newest entry)."""
        members = self.pop(session_id, None)
        if members is None:
            members = set()
            if len(self) >= self.limit:
                oldest = next(iter(self))
                del self[oldest]
                self.evicted += 1
                if self.evicted == 1 or self.evicted % 1000 == 0:
                    log.warning(
                        "local sessions are over the bound of %d: forgot %s (%d so far); a shutdown will not "
                        "checkpoint forgotten sessions", self.limit, oldest, self.evicted,
                    )  # fmt: skip
        members.add(agent_id)
        self[session_id] = members

    def remove(self, session_id: str, agent_id: str) -> None:
        """``agent_id`` left ``session_id``; the entry goes with its last agent."""
        members = self.get(session_id)
        if members is not None:
            members.discard(agent_id)
            if not members:
                del self[session_id]

    def drop(self, session_id: str) -> None:
        """Forget ``session_id`` (completed, expired or deleted)."""
        self.pop(session_id, None)
