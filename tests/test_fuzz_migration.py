"""Fuzzing migration task records: any field of a stored task (or its conflict / error lists, or a key of the
wrong type) overwritten with garbage gives a typed ``MigrationError`` from every read, never a crash."""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable

from migration_support import make_migration, populate, source, target_server
from reliability.fuzz import Tally, garbage_values

from huddle import SessionManager
from huddle.migration import SessionMigration

__all__ = ["make_migration", "source", "target_server"]

TASK_FIELDS = ("doc", "status", "cursor", "error", "total", "processed", "migrated", "unchanged", "kept", "failed",
               "unknown", "conflicts", "events", "started", "finished", "validation")  # fmt: skip
DOC_FIELDS = ("kind", "source", "target", "namespace", "target_namespace", "policy", "since", "ids", "validate_after",
              "backup_first", "batch_size", "created")  # fmt: skip


async def test_corrupted_migration_task_records_give_typed_errors(
    source: SessionManager, make_migration: Callable[..., Awaitable[SessionMigration]]
) -> None:
    await populate(source, 4, 3)
    migration = await make_migration()
    task_id = await migration.start_full_migration(validate_after=True)
    await migration.wait(task_id)
    store = migration._context().tasks
    raw = store.client
    key = store._key(task_id, "task")
    pristine = await raw.dump(key)
    rng = random.Random(19)
    tally = Tally("corrupted migration task record")
    doc = json.loads(await raw.hget(key, "doc"))
    plans: list[tuple[str, str, object]] = [("task", f, v) for f in TASK_FIELDS for v in garbage_values(rng)]
    plans += [("doc", f, v) for f in DOC_FIELDS for v in [*garbage_values(rng)[:6], None, [], {"x": 1}, -1]]
    plans += [("task-del", f, None) for f in TASK_FIELDS]
    plans += [("list", part, v) for part in ("conflicts", "errors") for v in garbage_values(rng)]
    plans += [("wrong-type", part, None) for part in ("task", "conflicts", "errors")]
    for kind, name, value in plans:
        if kind == "task":
            await raw.hset(key, name, value)
        elif kind == "task-del":
            await raw.hdel(key, name)
        elif kind == "doc":
            await raw.hset(key, "doc", json.dumps({**doc, name: value}))
        elif kind == "list":
            await raw.rpush(store._key(task_id, name), value)
        else:
            part = store._key(task_id, name)
            await raw.delete(part)
            await raw.set(part, "garbage")
        label = f"{kind}[{name}]={value!r}"[:70]
        await tally.attempt(f"status {label}", lambda: migration.get_migration_status(task_id))
        await tally.attempt(f"list {label}", lambda: migration.list_migrations())
        await tally.attempt(f"conflicts {label}", lambda: migration.get_conflicts(task_id))
        await tally.attempt(f"errors {label}", lambda: migration.get_errors(task_id))
        await tally.attempt(f"resume {label}", lambda: migration.resume_migration(task_id))
        for part in ("conflicts", "errors"):
            await raw.delete(store._key(task_id, part))
        await raw.restore(key, 0, pristine, replace=True)
    print(tally.summary())
    assert tally.untyped == [], "\n".join(sorted(set(tally.untyped))[:30])
