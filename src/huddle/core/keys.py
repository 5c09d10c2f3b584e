"""KeySpace: the only place that spells Redis key and channel names.

Every key of one session carries the hash tag ``{<session_id>}`` so that all of them live in one slot and a
Lua script may touch them together, also on Redis Cluster. Global indexes are sharded: each shard has its own
hash tag, so on a cluster they spread over the nodes and readers merge the shards.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The keys of one session, in the order the Lua scripts expect them."""

    meta: str
    events: str
    agents: str
    checkpoints: str
    idem: str
    failures: str
    channel: str
    tokens: str = ""
    """Sorted set: internal retry token -> seq (emit scripts only; dropped with the events they cover)."""

    @property
    def all(self) -> list[str]:
        """Every key of the session (scripts take them as KEYS[1..6])."""
        return [self.meta, self.events, self.agents, self.checkpoints, self.idem, self.failures]

    @property
    def emit(self) -> list[str]:
        """The keys of the emit scripts: ``all`` plus the retry tokens (KEYS[7])."""
        return [self.meta, self.events, self.agents, self.checkpoints, self.idem, self.failures, self.tokens]


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Builds key and channel names under one namespace."""

    namespace: str = "huddle"
    index_shards: int = 16
    global_channel_name: str = "global"
    session_channel_prefix: str = "session"

    def session(self, session_id: str) -> SessionKeys:
        """All keys of one session."""
        base = f"{self.namespace}:{{{session_id}}}"
        return SessionKeys(
            meta=f"{base}:meta",
            events=f"{base}:events",
            agents=f"{base}:agents",
            checkpoints=f"{base}:checkpoints",
            idem=f"{base}:idem",
            failures=f"{base}:failures",
            channel=self.session_channel(session_id),
            tokens=f"{base}:tok",
        )

    def session_pattern(self) -> str:
        """MATCH pattern for the meta key of every session (maintenance scans only)."""
        return f"{self.namespace}:{{*}}:meta"

    def session_id_from_meta_key(self, key: str) -> str:
        """Inverse of ``session(sid).meta``."""
        start = len(self.namespace) + 2
        return key[start : key.rindex("}")]

    # -- channels -------------------------------------------------------------------------------------------
    def session_channel(self, session_id: str) -> str:
        """Pub/sub channel notified on every event of one session."""
        return f"{self.namespace}:{self.session_channel_prefix}:{{{session_id}}}"

    @property
    def global_channel(self) -> str:
        """Pub/sub channel of session lifecycle notifications (created, joined, left, completed, checkpoint)."""
        return f"{self.namespace}:{self.global_channel_name}"

    @property
    def health_channel(self) -> str:
        """Pub/sub channel the health check publishes its round-trip probes on."""
        return f"{self.namespace}:health:probe"

    # -- sharded global indexes -----------------------------------------------------------------------------
    def shard_of(self, member: str) -> int:
        """Stable shard number of a session or agent id (crc32, identical in every process)."""
        return zlib.crc32(member.encode()) % self.index_shards

    def _index(self, name: str, shard: int) -> str:
        return f"{self.namespace}:idx:{{{self.namespace}.{name}.{shard}}}"

    def active_index(self, shard: int) -> str:
        """Sorted set: session id -> last activity (ms), for one shard."""
        return self._index("active", shard)

    def active_index_for(self, session_id: str) -> str:
        """The active-index shard that holds ``session_id``."""
        return self.active_index(self.shard_of(session_id))

    def active_indexes(self) -> list[str]:
        """Every active-index shard."""
        return [self.active_index(shard) for shard in range(self.index_shards)]

    def failure_index(self, shard: int) -> str:
        """Sorted set: ``<session_id>/<seq>`` -> time of the failure snapshot (ms), for one shard."""
        return self._index("failures", shard)

    def failure_index_for(self, session_id: str) -> str:
        """The failure-index shard that holds snapshots of ``session_id``."""
        return self.failure_index(self.shard_of(session_id))

    def failure_indexes(self) -> list[str]:
        """Every failure-index shard."""
        return [self.failure_index(shard) for shard in range(self.index_shards)]

    def agent_sessions(self, agent_id: str) -> str:
        """Sorted set: session id -> join time (ms) for one agent; the agent id is its own hash tag."""
        return f"{self.namespace}:agent:{{{agent_id}}}:sessions"

    def recovery(self, instance_id: str) -> str:
        """String: the recovery document a graceful shutdown of ``instance_id`` leaves (no session listing sees it)."""
        return f"{self.namespace}:recovery:{{{instance_id}}}"

    def agent_pattern(self) -> str:
        """MATCH pattern for every agent index (maintenance scans only)."""
        return f"{self.namespace}:agent:{{*}}:sessions"

    # -- migration (session-slot markers and backups; task keys share the task id as hash tag) -------------
    def migration_marker(self, session_id: str) -> str:
        """Hash in the session's slot: migration task id -> what that task did to the session here."""
        return f"{self.namespace}:{{{session_id}}}:migrated"

    def migration_backup(self, session_id: str, task_id: str) -> SessionKeys:
        """Where a migration task keeps the target's own copy of a session it overwrote (same slot)."""
        base = f"{self.namespace}:{{{session_id}}}:backup:{task_id}"
        return SessionKeys(
            meta=f"{base}:meta",
            events=f"{base}:events",
            agents=f"{base}:agents",
            checkpoints=f"{base}:checkpoints",
            idem=f"{base}:idem",
            failures=f"{base}:failures",
            channel="",
        )

    def migration_task(self, task_id: str, part: str) -> str:
        """One key of a migration task (``task``, ``ids``, ``conflicts``, ``errors``, ``written``, ``lease``)."""
        return f"{self.namespace}:migration:{{{task_id}}}:{part}"

    def migration_tasks(self) -> str:
        """Sorted set: migration task id -> creation time (ms)."""
        return f"{self.namespace}:migration:tasks"

    # -- cross-instance sync links (status records live in the session's slot; the registry is sharded) -----
    def sync_link(self, session_id: str, link: str) -> str:
        """Hash in the session's slot: the status of one sync link (``<instance>/<owner>``), expiring with it."""
        return f"{self.namespace}:{{{session_id}}}:sync:{link}"

    def sync_index(self, shard: int) -> str:
        """Sorted set: ``<session_id>/<instance>/<owner>`` -> last heartbeat (ms), for one shard."""
        return self._index("syncs", shard)

    def sync_index_for(self, session_id: str) -> str:
        """The sync-registry shard that holds links of ``session_id``."""
        return self.sync_index(self.shard_of(session_id))

    def sync_indexes(self) -> list[str]:
        """Every sync-registry shard."""
        return [self.sync_index(shard) for shard in range(self.index_shards)]

    def sync_wake(self, owner: str) -> str:
        """Stream one process appends to so that its multiplexed real-time reader picks up new links at once."""
        return f"{self.namespace}:sync:wake:{{{owner}}}"

    # -- replay (recordings carry their replay id as hash tag; the hold hash lives in the session's slot) ------
    def replay_holds(self, session_id: str) -> str:
        """Hash in the session's slot: recording id -> '<first seq still needed>:<lease end ms>'."""
        return f"{self.namespace}:{{{session_id}}}:replay_holds"

    def replay(self, replay_id: str, part: str) -> str:
        """One key of a recording: ``meta`` (hash), ``segments`` (list of frame blocks), ``segidx`` (list)."""
        return f"{self.namespace}:replay:{{{replay_id}}}:{part}"

    def replay_index(self, shard: int) -> str:
        """Sorted set: replay id -> recording start (ms), for one shard."""
        return self._index("replays", shard)

    def replay_index_for(self, replay_id: str) -> str:
        """The replay-index shard that holds ``replay_id``."""
        return self.replay_index(self.shard_of(replay_id))

    def replay_indexes(self) -> list[str]:
        """Every replay-index shard."""
        return [self.replay_index(shard) for shard in range(self.index_shards)]
