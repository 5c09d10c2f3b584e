"""The recovery document: one JSON string per instance, outside every session key and listing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ..backend.connection import RedisClient
from ..core.keys import KeySpace
from ..core.store import redis_boundary
from ..errors import RecoveryDataError
from .models import RECOVERY_VERSION, RecoveryData
from .state import ShutdownState


def recovery_document(state: ShutdownState, instance_id: str, namespace: str) -> RecoveryData:
    """What ``state`` knows so far, as the document the next start reads."""
    return RecoveryData(
        instance_id=instance_id,
        namespace=namespace,
        reason=state.options.reason,
        phase=state.phase,
        graceful=state.forced_reason is None,
        started_at=state.started_at,
        written_at=datetime.now(UTC),
        sessions=sorted(state.sessions, key=lambda session: session.session_id),
        recordings=list(state.recordings),
        tasks=list(state.tasks),
        errors=list(state.errors),
    )


class RecoveryStore:
    """Reads and writes the recovery document of one instance."""

    def __init__(self, client: RedisClient, keys: KeySpace, instance_id: str) -> None:
        self.client = client
        self.namespace = keys.namespace
        self.key = keys.recovery(instance_id)

    @redis_boundary
    async def save(self, data: RecoveryData, ttl: int) -> None:
        """Store ``data`` (replacing the previous document) for ``ttl`` seconds."""
        await self.client.set(self.key, data.model_dump_json(), ex=ttl)

    @redis_boundary
    async def load(self) -> RecoveryData | None:
        """The stored document, None if there is none; ``RecoveryDataError`` if it cannot be read."""
        raw = await self.client.get(self.key)
        if raw is None:
            return None
        try:
            document: Any = json.loads(raw)
        except ValueError as exc:
            raise RecoveryDataError(f"recovery data at {self.key} is not JSON: {exc}") from exc
        version = document.get("v") if isinstance(document, dict) else None
        if version != RECOVERY_VERSION:
            raise RecoveryDataError(
                f"recovery data at {self.key} has version {version!r}; this huddle reads version {RECOVERY_VERSION}"
            )
        try:
            return RecoveryData.model_validate(document)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise RecoveryDataError(
                f"recovery data at {self.key} is invalid: {where}: {first['msg']}"
            ) from exc

    @redis_boundary
    async def clear(self) -> bool:
        """Delete the document; True if there was one."""
        return bool(await self.client.delete(self.key))
