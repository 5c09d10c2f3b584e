"""One blocking reader for every real-time sync link of a process (standalone or Sentinel source).

Instead of one ``XREAD BLOCK`` per link (N links would hold N pooled connections, and a pool smaller than N
would starve the syncs themselves), one task blocks on every linked stream at once. A stream with new entries
gets a sync task for each of its idle links (at most ``concurrency`` syncs run at a time) and the reader blocks
again at once, from the highest seq it has seen for links being synced: it never waits for syncs, and an entry
that arrives during a sync makes that link sync again as soon as it is done. A link whose
sync failed is left out of the read until its backoff has passed. New links wake the reader through a small
stream of this process (``KeySpace.sync_wake``), so they are followed at once rather than after the block.

A Redis Cluster refuses multi-key XREAD across slots, and one blocked reader per link would hold one pooled
connection each. There the reader polls instead: one pipeline of non-blocking single-stream XREADs (the cluster
client splits it per node and sends the parts in parallel), repeated at once while events keep coming and, when
nothing was new, after an idle pause that doubles from ``POLL_MIN`` to ``POLL_MAX`` (new links reset it). Lag
after a quiet spell is at most ``POLL_MAX``; an idle process costs one round per node every ``POLL_MAX``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from ..backend.connection import RedisClient
from ..core.keys import KeySpace
from ..errors import HuddleError, SyncSourceGoneError
from .sync_links import SyncLink

log = logging.getLogger("huddle.migration.sync")

MAX_BACKOFF = 2.0
WAKE_TTL_MS = 60_000
POLL_MIN = 0.005
POLL_MAX = 0.25
CLUSTER_STOP_TIMEOUT = 10.0


class StreamFollower:
    """Multiplexes the real-time links of one process onto one ``XREAD BLOCK`` over all their streams."""

    def __init__(
        self,
        client: RedisClient,
        keys: KeySpace,
        owner: str,
        block_ms: int,
        sync: Callable[[SyncLink], Awaitable[int]],
        concurrency: int = 32,
        *,
        cluster: bool = False,
    ) -> None:
        self.client = client
        self.cluster = cluster
        self._poke = asyncio.Event()  # cluster: a new link (or close) ends the idle pause
        self._stopping = False
        self._pause = POLL_MIN
        self.keys = keys
        self.block_ms = block_ms
        self._sync = sync
        self._wake_key = keys.sync_wake(owner)
        self._wake_id = "0-0"
        self._streams: dict[str, list[SyncLink]] = {}
        self._gate = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None
        self._busy: dict[SyncLink, asyncio.Task[None]] = {}
        self.reads = 0
        """XREAD calls made so far (the benchmark reports it)."""

    def __len__(self) -> int:
        return sum(len(links) for links in self._streams.values())

    async def add(self, link: SyncLink) -> None:
        """Follow ``link`` from its last synced seq."""
        stream = self.keys.session(link.session_id).events
        self._streams.setdefault(stream, []).append(link)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="huddle-sync-follower")
            return
        if self.cluster:
            self._pause = POLL_MIN
            self._poke.set()
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.xadd(self._wake_key, {"w": "1"}, maxlen=8, approximate=False)
                pipe.pexpire(self._wake_key, WAKE_TTL_MS)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # the reader includes the link at its next round anyway
            log.debug("could not wake the sync reader: %s", exc)

    async def remove(self, link: SyncLink) -> None:
        """Stop following ``link`` (cancelling its sync in flight); the reader stops when no link is left."""
        self._drop(link)
        task = self._busy.pop(link, None)
        if task is not None:
            if self.cluster and not task.done():  # let it end rather than cancel it in a pipeline (see close)
                await asyncio.wait([task], timeout=CLUSTER_STOP_TIMEOUT)
            await _cancel([task])
        if not self._streams:
            await self.close()

    async def close(self) -> None:
        """Stop the reader and every sync in flight (idempotent).

        On a cluster the reader and the syncs are asked to finish rather than cancelled at once: a cancel that
        lands inside redis-py's cluster pipeline can leave the task waiting forever (seen as a hang in close).
        Every step they take is bounded (non-blocking reads, socket timeouts), so they end promptly."""
        task, self._task = self._task, None
        if self.cluster:
            self._stopping = True
            self._poke.set()
            running = [item for item in (task, *self._busy.values()) if item is not None and not item.done()]
            if running:
                await asyncio.wait(running, timeout=CLUSTER_STOP_TIMEOUT)
        await _cancel([task, *self._busy.values()])
        self._busy.clear()
        self._stopping = False

    def _request(self, now: float) -> tuple[dict[str, str], int]:
        """The streams to read (from the lowest position of their ready links) and the block time."""
        streams = {self._wake_key: self._wake_id}
        next_retry = math.inf
        for stream, links in self._streams.items():
            ready = [max(link.last_synced_seq, link.seen) for link in links if link.retry_at <= now]
            if ready:
                streams[stream] = f"0-{min(ready)}"
            else:
                next_retry = min(next_retry, *(link.retry_at for link in links))
        block = self.block_ms
        if next_retry < math.inf:
            block = min(block, max(int((next_retry - now) * 1000), 10))
        return streams, block

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.05
        while self._streams and not self._stopping:
            now = loop.time()
            streams, block = self._request(now)
            try:
                self.reads += 1
                reply = await (self._poll(streams, block) if self.cluster else
                               self.client.xread(streams, count=1, block=block))  # fmt: skip
            except (RedisError, OSError) as exc:
                log.warning("real-time sync reader failed (%s); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 0.05
            for stream, entries in _pairs(reply):
                if not entries:
                    continue
                if stream == self._wake_key:
                    self._wake_id = str(entries[-1][0])
                    continue
                seq = int(str(entries[-1][0]).partition("-")[2])
                for link in self._streams.get(stream, ()):
                    if link.retry_at > now:
                        continue
                    link.seen = max(link.seen, seq)
                    if link not in self._busy and link.last_synced_seq < seq:
                        task = asyncio.create_task(self._one(link, loop), name="huddle-sync-apply")
                        self._busy[link] = task
                        task.add_done_callback(lambda _, link=link: self._busy.pop(link, None))  # type: ignore[misc]

    async def _poll(self, streams: dict[str, str], block: int) -> list[tuple[str, list[Any]]]:
        """Cluster: every stream read without blocking in one pipeline; if none had news, pause (see above)."""
        found: list[tuple[str, list[Any]]] = []
        wanted = [(stream, position) for stream, position in streams.items() if stream != self._wake_key]
        if wanted:
            async with self.client.pipeline(transaction=False) as pipe:
                for stream, position in wanted:
                    pipe.xread({stream: position}, count=1)
                replies = await pipe.execute()
            found = [pair for reply in replies for pair in _pairs(reply) if pair[1]]
        if found:
            self._pause = POLL_MIN
            return found
        self._poke.clear()
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races the event, and
        # this task would poll on after close() (seen as a hang in close).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(self._pause, block / 1000)):
                await self._poke.wait()
        self._pause = min(self._pause * 2, POLL_MAX)
        return found

    async def _one(self, link: SyncLink, loop: asyncio.AbstractEventLoop) -> None:
        """Sync the link until it has what the reader has seen (or a sync fails: then back off)."""
        stream = self.keys.session(link.session_id).events
        while not self._stopping and link in self._streams.get(stream, ()):
            async with self._gate:
                try:
                    await self._sync(link)
                except SyncSourceGoneError:
                    self._drop(link)  # the session is gone: nothing more will come
                    return
                except (HuddleError, RedisError, OSError) as exc:
                    link.status, link.last_error = "retrying", str(exc)
                    link.retry_at = loop.time() + link.backoff
                    link.backoff = min(link.backoff * 2, MAX_BACKOFF)
                    link.seen = link.last_synced_seq  # read again from what the target has, once backed off
                    log.warning("sync of %s to %s failed (%s); retrying", link.session_id, link.instance, exc)
                    return
            link.retry_at, link.backoff = 0.0, 0.05
            if link.seen <= link.last_synced_seq:
                return

    def _drop(self, link: SyncLink) -> None:
        stream = self.keys.session(link.session_id).events
        links = self._streams.get(stream, [])
        if link in links:
            links.remove(link)
            if not links:
                del self._streams[stream]


def _pairs(reply: Any) -> list[tuple[str, list[Any]]]:
    """XREAD's reply (huddle's clients speak RESP2: a list of [stream, entries]) as (stream, entries) pairs."""
    if not reply:
        return []
    items = reply.items() if isinstance(reply, dict) else reply
    return [(str(stream), list(entries)) for stream, entries in items]


async def _cancel(tasks: list[asyncio.Task[None] | None]) -> None:
    running = [task for task in tasks if task is not None and not task.done()]
    for task in running:
        task.cancel()
    for outcome in await asyncio.gather(*running, return_exceptions=True):
        if isinstance(outcome, Exception):
            log.error("a real-time sync task had failed: %r", outcome)
