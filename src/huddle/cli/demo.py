"""``huddle demo``: the spec's multi-agent collaboration example, for real, with a timeline."""

from __future__ import annotations

import asyncio
from typing import Any

import typer
from rich.table import Table

from ..config import SessionManagerConfig
from ..core.manager import SessionManager
from ..models import Event
from .common import console, redis_config


def _modified(element: str, entity: str) -> dict[str, Any]:
    return {
        "type": "modified",
        "change_info": {"element_type": element, "entity_ids": [entity], "operation": "modified"},
    }


async def run_demo(config: SessionManagerConfig) -> list[Event]:
    """Three agents, each with its own manager (own connections), work one session concurrently."""
    frontend, backend, testing, observer = (SessionManager(config) for _ in range(4))
    async with frontend, backend, testing, observer:
        sid = await frontend.create_session("frontend-agent", metadata={"feature": "user-authentication"})
        seen: list[Event] = []

        async def watch() -> None:
            async for event in observer.subscribe(sid, from_seq=1):
                seen.append(event)
                if event.type == "checkpoint" and event.data and event.data.get("reason") == "manual":
                    return

        watcher = asyncio.create_task(watch())
        await backend.join_session(sid, "backend-agent")
        await asyncio.gather(
            frontend.emit_event(sid, _modified("component", "LoginForm.tsx"), "frontend-agent"),
            backend.emit_event(sid, _modified("function", "auth/login.ts"), "backend-agent"),
            *(
                frontend.emit_event(sid, _modified("component", f"Field{i}.tsx"), "frontend-agent")
                for i in range(3)
            ),
            *(
                backend.emit_event(sid, _modified("function", f"auth/token{i}.ts"), "backend-agent")
                for i in range(3)
            ),
        )
        await testing.join_session(sid, "testing-agent")
        await testing.emit_event(
            sid,
            {
                "type": "broke",
                "changeInfo": {"elementType": "test", "entityIds": ["auth.test.ts"], "operation": "failed"},
                "stateTransition": {
                    "from": "working",
                    "to": "broken",
                    "verifiedBy": "test-suite",
                    "confidence": 0.95,
                },
                "impact": {"severity": "high", "testsFailed": ["auth.test.ts::login"]},
            },
            "testing-agent",
        )
        await frontend.emit_event(
            sid,
            {
                "type": "fixed",
                "change_info": {
                    "element_type": "component",
                    "entity_ids": ["LoginForm.tsx"],
                    "operation": "modified",
                },
                "state_transition": {
                    "from": "broken",
                    "to": "working",
                    "verified_by": "manual-test",
                    "confidence": 0.9,
                },
            },
            "frontend-agent",
        )
        await testing.emit_event(
            sid, {"type": "test_pass", "data": {"suite": "auth", "passed": 42}}, "testing-agent"
        )
        checkpoint_id = await frontend.checkpoint(sid, actor="frontend-agent")
        await asyncio.wait_for(watcher, timeout=10)
        document = await frontend.get_session(sid)
        failures = await frontend.list_failure_snapshots(limit=5)
        _print_timeline(sid, seen)
        seqs = [event.seq for event in seen]
        gapless = seqs == list(range(1, document.last_seq + 1))
        console.print(
            f"session [bold]{sid}[/]: state [bold]{document.state}[/], {len(document.agents)} agents, "
            f"last seq {document.last_seq}, checkpoint [bold]{checkpoint_id}[/]"
        )
        console.print(
            f"observer saw {len(seen)} events live, seqs 1..{document.last_seq} "
            + ("[green]gapless, in order[/]" if gapless else "[red]NOT gapless[/]")
        )
        console.print(f"failure snapshots taken: {sum(1 for ref in failures if ref.session_id == sid)}")
        return seen


def _print_timeline(session_id: str, events: list[Event]) -> None:
    table = Table(title=f"Timeline of {session_id}", title_justify="left")
    for column in ("seq", "time", "actor", "type", "entities", "state"):
        table.add_column(column, justify="right" if column == "seq" else "left")
    state = "working"
    for event in events:
        transition = event.state_transition
        if transition is not None:
            state = f"{transition.from_state} → {transition.to}"
        entities = ", ".join(event.change_info.entity_ids) if event.change_info else ""
        if event.type == "checkpoint" and event.data:
            entities = str(event.data.get("checkpoint_id", ""))
        style = {"broke": "red", "fixed": "green", "checkpoint": "cyan"}.get(event.type, "")
        table.add_row(
            str(event.seq),
            event.timestamp.strftime("%H:%M:%S.%f")[:-3],
            event.actor,
            f"[{style}]{event.type}[/]" if style else event.type,
            entities,
            state if transition is not None else "",
        )
    console.print(table)


def demo_command(
    cluster: bool = typer.Option(
        False, "--cluster", help="Run on a local Redis Cluster (3 masters + 3 replicas) started for the demo."
    ),
) -> None:
    """Run the spec's multi-agent collaboration example and print its timeline."""

    async def main() -> None:
        if cluster:
            await run_cluster_demo()
            return
        async with redis_config(checkpoint_interval=100) as config:
            await run_demo(config)

    asyncio.run(main())


async def run_cluster_demo() -> None:
    """The demo on a local 3-master cluster, then where a few more sessions landed (per master)."""
    from ..backend.topology import EmbeddedCluster

    with console.status("starting a local Redis Cluster (3 masters + 3 replicas)..."):
        local = await asyncio.to_thread(EmbeddedCluster(masters=3, replicas=1).start)
    try:
        console.print(f"[dim]cluster of {len(local.nodes)} nodes on ports {local.ports}[/]")
        config = SessionManagerConfig(redis_url=local.url, checkpoint_interval=100)
        await run_demo(config)
        async with SessionManager(config) as manager:
            sids = [await manager.create_session("demo-agent") for _ in range(30)]
            spread = local.distribution([manager.keys.session(sid).meta for sid in sids])
        table = Table(title="30 more sessions, by master", title_justify="left")
        table.add_column("master")
        table.add_column("sessions", justify="right")
        for port, count in sorted(spread.items()):
            table.add_row(f"127.0.0.1:{port}", str(count))
        console.print(table)
    finally:
        await asyncio.to_thread(local.stop)
