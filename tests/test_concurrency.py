"""Concurrent writers in several OS processes get gapless, unique sequence numbers."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from collections.abc import Awaitable, Callable

from huddle import SessionManager, SessionManagerConfig

PROCESSES = 4
EMITS_PER_PROCESS = 250
MakeManager = Callable[..., Awaitable[SessionManager]]


def _writer(url: str, namespace: str, session_id: str, agent: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    async def run() -> list[int]:
        config = SessionManagerConfig(redis_url=url, namespace=namespace, max_events_per_session=5000)
        async with SessionManager(config) as manager:
            await manager.join_session(session_id, agent)
            event = {"type": "modified", "data": {"agent": agent}}
            return list(
                await asyncio.gather(
                    *(manager.emit_event(session_id, event, agent) for _ in range(EMITS_PER_PROCESS))
                )
            )

    out.put((agent, asyncio.run(run())))


async def test_four_processes_emitting_concurrently_get_gapless_unique_seqs(
    make_manager: MakeManager,
) -> None:
    manager = await make_manager(max_events_per_session=5000)
    config = manager.config
    sid = await manager.create_session("owner")
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    workers = [
        ctx.Process(target=_writer, args=(config.redis_url, config.namespace, sid, f"agent-{i}", queue))
        for i in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    results = [await asyncio.to_thread(queue.get, True, 90) for _ in workers]
    for worker in workers:
        await asyncio.to_thread(worker.join, 30)
        assert worker.exitcode == 0

    returned = sorted(seq for _, seqs in results for seq in seqs)
    assert len(returned) == PROCESSES * EMITS_PER_PROCESS
    assert len(set(returned)) == len(returned), "duplicate seqs handed out"

    events = await manager.get_events(sid)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "gap in the log"
    emitted = [e for e in events if e.type == "modified"]
    assert sorted(e.seq for e in emitted) == returned
    for agent, seqs in results:
        assert {e.seq for e in emitted if e.actor == agent} == set(seqs)
    document = await manager.get_session(sid)
    assert document.last_seq == events[-1].seq
    # 1 start + 4 joins + 1000 emits + one auto checkpoint per checkpoint_interval emits
    assert document.last_seq == 1 + PROCESSES + PROCESSES * EMITS_PER_PROCESS + (
        PROCESSES * EMITS_PER_PROCESS // config.checkpoint_interval
    )
