"""Persisted migration tasks: status, counters, cursor, conflicts, errors and the run lease, on the target.

Every key of one task carries the task id as hash tag, so a batch's bookkeeping is one script on one slot
(migration_commit.lua, also on a cluster): counters, cursor, written ids, conflicts and errors move together or
not at all. The global task index is another key (another slot), written separately.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

from pydantic import ValidationError
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from ..backend.connection import RedisClient
from ..core.keys import KeySpace
from ..core.scripts import lua_file
from ..core.store import redis_boundary
from ..errors import HuddleError, MigrationStateError
from ..models import ms_to_datetime
from .models import (
    ConflictRecord,
    MigrationErrorRecord,
    MigrationProgress,
    MigrationTask,
    ValidationReport,
)

COUNTERS = ("total", "processed", "migrated", "unchanged", "kept", "failed", "unknown", "conflicts", "events")
RECENT = 100
_PARTS = ("task", "ids", "conflicts", "errors", "written", "lease")


P = ParamSpec("P")
T = TypeVar("T")
_CORRUPT = (KeyError, ValueError, TypeError, OverflowError, AttributeError, ValidationError)


def corrupt_record_is_typed(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """A task record that cannot be parsed (garbage in a field, a key of the wrong Redis type) raises
    ``MigrationStateError`` naming the problem, not whatever the parser tripped on."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await func(*args, **kwargs)
        except ResponseError as exc:
            if "WRONGTYPE" not in str(exc):
                raise
            raise MigrationStateError(f"a migration task key holds the wrong Redis type: {exc}") from exc
        except HuddleError:
            raise  # already typed (some are ValueError subclasses too)
        except _CORRUPT as exc:
            raise MigrationStateError(
                f"the migration task record is corrupt ({type(exc).__name__}: {str(exc)[:200]})"
            ) from exc

    return wrapper


def _script(name: str) -> str:
    return lua_file(name)


def now_ms() -> int:
    """Wall-clock milliseconds (task bookkeeping only; session data uses the server clock)."""
    return int(time.time() * 1000)


class TaskStore:
    """Reads and writes migration task records on one Redis (the migration's target)."""

    def __init__(self, client: RedisClient, keys: KeySpace, ttl_seconds: int) -> None:
        self.client = client
        self.keys = keys
        self.ttl = ttl_seconds
        self._commit: AsyncScript = client.register_script(_script("migration_commit"))
        self._load: AsyncScript = client.register_script(_script("migration_load"))

    def _key(self, task_id: str, part: str) -> str:
        return self.keys.migration_task(task_id, part)

    def _expire_all(self, pipe: Any, task_id: str) -> None:
        for part in _PARTS[:-1]:
            pipe.expire(self._key(task_id, part), self.ttl)

    @corrupt_record_is_typed
    @redis_boundary
    async def create(self, task_id: str, doc: Mapping[str, Any], ids: Sequence[str], total: int) -> None:
        """Record a new pending task (and, for a selective task, its id list)."""
        fields: dict[str, Any] = {
            "doc": json.dumps(dict(doc)),
            "status": "pending",
            "cursor": "{}",
            "error": "",
        }
        fields.update(dict.fromkeys(COUNTERS, 0))
        fields["total"] = total
        async with self.client.pipeline(transaction=True) as pipe:  # the task's own slot only
            pipe.hset(self._key(task_id, "task"), mapping=fields)
            for start in range(0, len(ids), 1000):
                pipe.rpush(self._key(task_id, "ids"), *ids[start : start + 1000])
            self._expire_all(pipe, task_id)
            await pipe.execute()
        # The global index lives in another slot: written after the record, so every listed id had a record
        # (entries whose record expired since are dropped by ``task_ids``).
        await self.client.zadd(self.keys.migration_tasks(), {task_id: doc["created"]})

    @corrupt_record_is_typed
    @redis_boundary
    async def exists(self, task_id: str) -> bool:
        """True if the task is recorded."""
        return bool(await self.client.exists(self._key(task_id, "task")))

    @corrupt_record_is_typed
    @redis_boundary
    async def load(self, task_id: str, recent: int = RECENT) -> MigrationTask | None:
        """The task as recorded, with its latest conflicts and errors."""
        keys = [self._key(task_id, part) for part in ("task", "conflicts", "errors")]
        fields, conflicts, errors = await self._load(keys=keys, args=[recent])
        if not fields:
            return None
        raw = {str(fields[i]): str(fields[i + 1]) for i in range(0, len(fields), 2)}
        doc = json.loads(raw["doc"])
        counters = {name: int(raw.get(name, 0)) for name in COUNTERS}
        progress = MigrationProgress(
            total_sessions=max(counters["total"], counters["processed"]),
            processed_sessions=counters["processed"],
            migrated_sessions=counters["migrated"],
            unchanged_sessions=counters["unchanged"],
            kept_sessions=counters["kept"],
            failed_sessions=counters["failed"],
            unknown_sessions=counters["unknown"],
            conflicts=counters["conflicts"],
            migrated_events=counters["events"],
        )
        validation = raw.get("validation")
        return MigrationTask(
            task_id=task_id,
            kind=doc["kind"],
            status=raw["status"],
            source=doc["source"],
            target=doc["target"],
            namespace=doc["namespace"],
            target_namespace=doc["target_namespace"],
            conflict_policy=doc["policy"],
            since=ms_to_datetime(doc["since"]) if doc.get("since") is not None else None,
            session_ids_count=int(doc.get("ids", 0)),
            validate_after=bool(doc["validate_after"]),
            backup_first=bool(doc["backup_first"]),
            batch_size=int(doc["batch_size"]),
            created_at=ms_to_datetime(doc["created"]),
            started_at=ms_to_datetime(raw["started"]) if raw.get("started") else None,
            finished_at=ms_to_datetime(raw["finished"]) if raw.get("finished") else None,
            progress=progress,
            cursor=json.loads(raw.get("cursor") or "{}"),
            error=raw.get("error") or None,
            recent_conflicts=[ConflictRecord.model_validate_json(item) for item in conflicts],
            recent_errors=[MigrationErrorRecord.model_validate_json(item) for item in errors],
            validation=ValidationReport.model_validate_json(validation) if validation else None,
        )

    @corrupt_record_is_typed
    @redis_boundary
    async def status(self, task_id: str) -> str | None:
        """The task's status field."""
        value = await self.client.hget(self._key(task_id, "task"), "status")
        return str(value) if value is not None else None

    @corrupt_record_is_typed
    @redis_boundary
    async def set_status(
        self,
        task_id: str,
        status: str,
        *,
        error: str | None = None,
        started: bool = False,
        finished: bool = False,
    ) -> None:
        """Move the task to ``status`` (optionally stamping start/finish time and an error)."""
        fields: dict[str, Any] = {"status": status}
        if error is not None:
            fields["error"] = error
        if started:
            fields["started"] = now_ms()
            fields["finished"] = ""
        if finished:
            fields["finished"] = now_ms()
        await self.client.hset(self._key(task_id, "task"), mapping=fields)

    @corrupt_record_is_typed
    @redis_boundary
    async def request_cancel(self, task_id: str) -> bool:
        """Ask the process running the task to stop after its current batch; False if it is not running."""
        status = await self.status(task_id)
        if status in ("pending", "running"):
            await self.client.hset(self._key(task_id, "task"), "status", "cancelling")
            return True
        return False

    @corrupt_record_is_typed
    @redis_boundary
    async def add_total(self, task_id: str, count: int) -> None:
        """Set the number of sessions to migrate (counted when the task starts)."""
        await self.client.hset(self._key(task_id, "task"), "total", count)

    @corrupt_record_is_typed
    @redis_boundary
    async def commit_batch(
        self,
        task_id: str,
        increments: Mapping[str, int],
        cursor: Mapping[str, Any],
        written: Sequence[tuple[str, int]],
        conflicts: Sequence[ConflictRecord],
        errors: Sequence[MigrationErrorRecord],
    ) -> str:
        """Record one batch atomically; returns the task's status (``cancelling`` asks the runner to stop).

        ``written``: (session id, events) of the sessions written; the script counts a session as migrated
        (and its events) only the first time the task writes it, so a session SCAN returns twice, or that a
        resumed run writes again after its first run recorded it, is not counted twice."""
        counters = [str(item) for name, value in increments.items() if value for item in (name, value)]
        args: list[str | int] = [self.ttl, json.dumps(dict(cursor))]
        for items in (
            counters,
            [str(item) for sid, events in written for item in (sid, events)],
            [item.model_dump_json() for item in conflicts],
            [item.model_dump_json() for item in errors],
        ):
            args += [len(items), *items]
        keys = [self._key(task_id, part) for part in ("task", "ids", "conflicts", "errors", "written")]
        return str(await self._commit(keys=keys, args=args))

    @corrupt_record_is_typed
    @redis_boundary
    async def save_validation(self, task_id: str, report: ValidationReport) -> None:
        """Keep the latest validation report with the task."""
        await self.client.hset(self._key(task_id, "task"), "validation", report.model_dump_json())

    @corrupt_record_is_typed
    @redis_boundary
    async def ids(self, task_id: str, start: int, count: int) -> list[str]:
        """A page of a selective task's session ids."""
        return [
            str(item)
            for item in await self.client.lrange(self._key(task_id, "ids"), start, start + count - 1)
        ]

    async def written(self, task_id: str, count: int) -> AsyncIterator[list[str]]:
        """The ids of sessions the task wrote, in pages (SSCAN: bounded memory)."""
        cursor = 0
        while True:
            cursor, page = await self.client.sscan(self._key(task_id, "written"), cursor, count=count)
            if page:
                yield [str(item) for item in page]
            if int(cursor) == 0:
                return

    @corrupt_record_is_typed
    @redis_boundary
    async def conflicts(self, task_id: str, start: int = 0, stop: int = -1) -> list[ConflictRecord]:
        """Conflicts recorded by the task, oldest first."""
        items = await self.client.lrange(self._key(task_id, "conflicts"), start, stop)
        return [ConflictRecord.model_validate_json(item) for item in items]

    @corrupt_record_is_typed
    @redis_boundary
    async def errors(self, task_id: str, start: int = 0, stop: int = -1) -> list[MigrationErrorRecord]:
        """Errors recorded by the task, oldest first."""
        items = await self.client.lrange(self._key(task_id, "errors"), start, stop)
        return [MigrationErrorRecord.model_validate_json(item) for item in items]

    @corrupt_record_is_typed
    @redis_boundary
    async def task_ids(self, limit: int) -> list[str]:
        """The most recent task ids whose record still exists, newest first.

        Index entries of tasks whose record expired are removed on the way (the index is one sorted set in
        its own slot, the records live in their tasks' slots: no transaction can span both on a cluster)."""
        index = self.keys.migration_tasks()
        live: list[str] = []
        start = 0
        while len(live) < limit:
            page = [str(item) for item in await self.client.zrevrange(index, start, start + limit - 1)]
            if not page:
                break
            async with self.client.pipeline(transaction=False) as pipe:
                for task_id in page:
                    pipe.exists(self._key(task_id, "task"))
                found = await pipe.execute()
            gone = [task_id for task_id, hit in zip(page, found, strict=True) if not hit]
            live += [task_id for task_id, hit in zip(page, found, strict=True) if hit]
            if gone:
                await self.client.zrem(index, *gone)
            start += len(page) - len(gone)
        return live[:limit]

    # -- the run lease: one live process per task; a dead process's lease expires ---------------------------
    @corrupt_record_is_typed
    @redis_boundary
    async def acquire_lease(self, task_id: str, owner: str, ttl_ms: int) -> bool:
        """Take the task's lease (False if another live process holds it)."""
        return bool(await self.client.set(self._key(task_id, "lease"), owner, px=ttl_ms, nx=True))

    @corrupt_record_is_typed
    @redis_boundary
    async def renew_lease(self, task_id: str, owner: str, ttl_ms: int) -> None:
        """Extend the lease while running."""
        await self.client.set(self._key(task_id, "lease"), owner, px=ttl_ms)

    @corrupt_record_is_typed
    @redis_boundary
    async def release_lease(self, task_id: str) -> None:
        """Drop the lease when the run ends."""
        await self.client.delete(self._key(task_id, "lease"))
