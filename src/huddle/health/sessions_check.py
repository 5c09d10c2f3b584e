"""The session store component: active and broken sessions, un-checkpointed activity, scripts, read from Redis."""

from __future__ import annotations

from ..backend.connection import RedisClient, is_cluster
from ..core.keys import KeySpace
from ..core.store import SessionStore
from .checkset import BATCH, UNREACHABLE, CheckSet, text_of
from .config import HealthConfig
from .report import ComponentHealth


class SessionsCheck:
    """Active and broken sessions, the oldest un-checkpointed activity and the scripts, read from Redis."""

    name = "sessions"

    def __init__(self, store: SessionStore, config: HealthConfig) -> None:
        self.store = store
        self.keys: KeySpace = store.keys
        self.config = config
        self._error = ""

    async def run(self) -> ComponentHealth:
        checks = CheckSet(self.name, "component", self.config)
        client = self.store.client
        try:
            seconds, micros = await client.time()
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            figures = await self._scan(client)
            unreadable = figures.pop("unreadable_shards")
            loaded, reloaded = await self._scripts(bool(unreadable))
        except UNREACHABLE as exc:
            checks.add("active", None, "sessions", level="down", output=f"unreachable: {exc}")
            return checks.component()
        partial = f"{unreadable} of {len(self.keys.active_indexes())} index shards unreadable: {self._error}"
        checks.add(
            "unreadableShards", unreadable, "shards",
            level="critical" if unreadable else "healthy",
            output=f"{partial} (a cluster primary is down; the figures below are partial)" if unreadable else None,
        )  # fmt: skip
        checks.add("active", figures["active"], "sessions")
        checks.add("inGrace", figures["in_grace"], "sessions")
        checks.add("staleIndexEntries", figures["stale"], "entries")
        checks.add("broken", figures["broken"], "sessions")
        oldest_broken, oldest_pending = figures["oldest_broken_ms"], figures["oldest_pending_ms"]
        # None when no session is broken / every session's activity is covered by a checkpoint.
        checks.add("oldestBroken", round((now_ms - oldest_broken) / 1000, 3) if oldest_broken else None, "s")
        checks.add(
            "oldestUncheckpointed",
            round((now_ms - oldest_pending) / 1000, 3) if oldest_pending else None,
            "s",
        )
        checks.add(
            "scriptsLoaded", loaded,
            level="critical" if loaded is None else "healthy",
            output="reloaded after a server restart" if reloaded else "unknown" if loaded is None else None,
        )  # fmt: skip
        details = {
            "active_sessions": figures["active"],
            "sessions_in_grace": figures["in_grace"],
            "broken_sessions": figures["broken"],
            "uncheckpointed_sessions": figures["uncheckpointed"],
            "index_entries": figures["entries"],
        }
        return checks.component(details=details)

    async def _scripts(self, partial: bool) -> tuple[bool | None, bool]:
        """(scripts loaded, reloaded now); loaded is None when a down cluster primary makes it unknowable."""
        try:
            if await self.store.scripts_loaded():
                return True, False
            await self.store.load()  # Redis restarted empty: load them now rather than on first use
            return True, True
        except UNREACHABLE:
            if not partial:
                raise
            return None, False

    async def _scan(self, client: RedisClient) -> dict[str, int]:
        """ZSCAN every active-index shard in batches (bounded memory) and read each session's meta.

        On a cluster a shard whose primary is down is counted in ``unreadable_shards`` (the others are still
        read); raises when no shard could be read, or on a single server."""
        names = ("active", "in_grace", "stale", "broken", "uncheckpointed", "entries", "oldest_broken_ms")
        figures = dict.fromkeys(names, 0)
        figures["oldest_pending_ms"] = figures["unreadable_shards"] = 0
        shards = self.keys.active_indexes()
        for key in shards:
            try:
                await self._scan_shard(client, key, figures)
            except UNREACHABLE as exc:
                if not is_cluster(client) or figures["unreadable_shards"] + 1 == len(shards):
                    raise
                figures["unreadable_shards"] += 1
                self._error = f"{type(exc).__name__}: {exc}"
        return figures

    async def _scan_shard(self, client: RedisClient, key: str, figures: dict[str, int]) -> None:
        cursor = 0
        while True:
            cursor, entries = await client.zscan(key, cursor, count=BATCH)
            sids = [text_of(member) for member, _ in entries]
            figures["entries"] += len(sids)
            if sids:
                await self._read_batch(client, sids, figures)
            if cursor == 0:
                return

    async def _read_batch(self, client: RedisClient, sids: list[str], figures: dict[str, int]) -> None:
        async with client.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hmget(self.keys.session(sid).meta, ["status", "broken", "seq", "cps", "grace"])
            metas = await pipe.execute()
        pending: list[tuple[str, int]] = []
        for sid, (status, broken, seq, cps, grace) in zip(sids, metas, strict=True):
            if status is None or text_of(status) != "active":
                figures["stale"] += 1
                continue
            figures["active"] += 1
            figures["in_grace"] += text_of(grace or "0") == "1"
            if broken:
                figures["broken"] += 1
                figures["oldest_broken_ms"] = _older(figures["oldest_broken_ms"], int(broken))
            if int(seq or 0) > int(cps or 0):
                figures["uncheckpointed"] += 1
                pending.append((sid, int(cps or 0)))
        if pending:
            # The first event after the last checkpoint is the oldest activity no checkpoint covers.
            async with client.pipeline(transaction=False) as pipe:
                for sid, cps in pending:
                    pipe.xrange(self.keys.session(sid).events, f"0-{cps + 1}", "+", count=1)
                replies = await pipe.execute()
            for entries in replies:
                if entries:
                    fields = {text_of(k): text_of(v) for k, v in entries[0][1].items()}
                    if fields.get("ts"):
                        figures["oldest_pending_ms"] = _older(figures["oldest_pending_ms"], int(fields["ts"]))


def _older(current: int, candidate: int) -> int:
    """The older of two timestamps, where 0 means 'none yet'."""
    return candidate if not current or candidate < current else current
