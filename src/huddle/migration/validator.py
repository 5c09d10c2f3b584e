"""Validating a migration: batches of sessions compared on both sides, a few in flight, summed up in a report.

A task with ``validate_after`` feeds each batch to the ``Validator`` as soon as the batch is written, so the
comparison runs on both servers while the next batches are copied; ``validate`` walks a task's sessions (or the
whole namespace) again from the start, for ``validate_migration`` and resumed tasks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from ..backend.connection import RedisClient, server_version
from ..core.store import redis_boundary
from .models import ValidationReport
from .validation import Comparison, Digester, compare, only_on_target

MAX_MISMATCHES = 1000
IN_FLIGHT = 4


@redis_boundary
async def _version(client: RedisClient) -> tuple[int, ...]:
    return await server_version(client)


async def versions(source: RedisClient, target: RedisClient) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Both sides' Redis versions (the lowest of a cluster's nodes)."""
    mine, theirs = await asyncio.gather(_version(source), _version(target))
    return mine, theirs


async def same_version(source: RedisClient, target: RedisClient) -> bool:
    """Do both sides run the same Redis major.minor (so session fingerprints are comparable)?"""
    mine, theirs = await versions(source, target)
    return mine[:2] == theirs[:2]


class Validator:
    """Compares batches of session ids on both sides, at most ``IN_FLIGHT`` batches at a time."""

    def __init__(self, source: Digester, target: Digester, *, fingerprints: bool) -> None:
        self.source = source
        self.target = target
        self.fingerprints = fingerprints
        self.started = time.perf_counter()
        self.total = Comparison()
        self.failed = 0
        self._pending: set[asyncio.Task[Comparison]] = set()

    def _keep(self, found: Comparison) -> None:
        self.total.checked += found.checked
        self.total.on_target += found.on_target
        self.failed += len(found.mismatches)
        room = MAX_MISMATCHES - len(self.total.mismatches)
        self.total.mismatches.extend(found.mismatches[:room])

    def verified(self, count: int) -> None:
        """Count sessions already verified (fingerprint read back on the target equal to the source's)."""
        self.total.checked += count
        self.total.on_target += count

    async def add(self, session_ids: list[str]) -> None:
        """Start comparing these sessions (waits while ``IN_FLIGHT`` comparisons are running)."""
        if not session_ids:
            return
        while len(self._pending) >= IN_FLIGHT:
            done, self._pending = await asyncio.wait(self._pending, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                self._keep(finished.result())
        self._pending.add(
            asyncio.create_task(
                compare(self.source, self.target, session_ids, fingerprints=self.fingerprints)
            )
        )

    async def drain(self) -> None:
        """Wait for every comparison started so far."""
        pending, self._pending = self._pending, set()
        for comparison in await asyncio.gather(*pending):
            self._keep(comparison)

    async def target_only(
        self,
        count_target: Callable[[], Awaitable[int]],
        target_batches: Callable[[], AsyncIterator[tuple[list[str], object]]],
    ) -> None:
        """Find sessions only the target has — unless counting the target's sessions shows that every one of
        them was already compared (the usual case after a full migration: one counting SCAN, no lookups)."""
        await self.drain()
        if await count_target() == self.total.on_target:
            return
        async for missing in only_on_target(self.source, target_batches()):
            self._keep(await compare(self.source, self.target, missing, fingerprints=self.fingerprints))

    def report(self, task_id: str | None) -> ValidationReport:
        """The report of everything compared (call after ``drain``/``target_only``)."""
        return ValidationReport(
            task_id=task_id,
            total_checked=self.total.checked,
            passed=self.total.checked - self.failed,
            failed=self.failed,
            mismatches=self.total.mismatches,
            duration_ms=(time.perf_counter() - self.started) * 1000,
            checked_at=datetime.now(UTC),
        )

    async def aclose(self) -> None:
        """Cancel comparisons still running (a failed or cancelled task)."""
        pending, self._pending = self._pending, set()
        for unfinished in pending:
            unfinished.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
