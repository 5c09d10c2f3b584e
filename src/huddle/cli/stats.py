"""``huddle stats``: session analytics computed from what Redis holds."""

from __future__ import annotations

import asyncio

import typer
from rich.table import Table

from ..core.manager import SessionManager
from ..models import Distribution, SessionStats
from .common import console, redis_config


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.3f}".rstrip("0").rstrip(".") + unit


def _distribution_row(table: Table, name: str, found: Distribution, unit: str = "") -> None:
    table.add_row(
        name,
        str(found.count),
        _fmt(found.min, unit),
        _fmt(found.mean, unit),
        _fmt(found.p50, unit),
        _fmt(found.p95, unit),
        _fmt(found.max, unit),
    )


def render(stats: SessionStats) -> None:
    """Print ``stats`` as Rich tables."""
    overview = Table(title="Sessions", show_header=False)
    rows = [
        ("active sessions", stats.active_sessions),
        ("in grace period", stats.sessions_in_grace),
        ("broken now", stats.broken_sessions),
        ("by state", ", ".join(f"{k}={v}" for k, v in sorted(stats.sessions_by_state.items())) or "-"),
        (
            "created in the last hour / day",
            f"{stats.sessions_created_last_hour} / {stats.sessions_created_last_day}",
        ),
        ("creation rate (per hour, last day)", _fmt(stats.creation_rate_per_hour)),
        (
            "events (total, avg per session)",
            f"{stats.total_events} ({_fmt(stats.average_events_per_session)})",
        ),
        (
            "distinct agents (avg per session)",
            f"{stats.distinct_agents} ({_fmt(stats.average_agents_per_session)})",
        ),
        ("failure snapshots", stats.failure_snapshots),
        ("events scanned in logs", stats.events_scanned),
        ("handoffs (agent switches)", f"{stats.handoff_count} ({stats.actor_switches})"),
    ]
    for name, value in rows:
        overview.add_row(name, str(value))
    console.print(overview)

    spread = Table(title="Distributions")
    for column in ("figure", "n", "min", "mean", "p50", "p95", "max"):
        spread.add_column(column, justify="left" if column == "figure" else "right")
    _distribution_row(spread, "session age", stats.session_age_seconds, "s")
    _distribution_row(spread, "session active time", stats.session_active_seconds, "s")
    _distribution_row(spread, "events per session", stats.events_per_session)
    _distribution_row(spread, "events per minute", stats.events_per_minute)
    _distribution_row(spread, "sessions per agent", stats.sessions_per_agent)
    _distribution_row(spread, "events per agent", stats.events_per_agent)
    _distribution_row(spread, "broke -> fixed", stats.time_to_fix_seconds, "s")
    console.print(spread)

    if stats.agent_workload:
        workload = Table(title="Agent workload (busiest first)")
        workload.add_column("agent")
        workload.add_column("sessions", justify="right")
        workload.add_column("events", justify="right")
        for agent in stats.agent_workload:
            workload.add_row(agent.agent_id, str(agent.sessions), str(agent.events))
        console.print(workload)
    if stats.collaboration_pairs or stats.handoffs:
        together = Table(title="Collaboration")
        together.add_column("agents")
        together.add_column("shared sessions / handoffs", justify="right")
        for pair in stats.collaboration_pairs:
            together.add_row(" + ".join(pair.agents), str(pair.shared_sessions))
        for handoff in stats.handoffs:
            together.add_row(
                f"{handoff.from_agent} -> {handoff.to_agent or '?'}", f"{handoff.count} handoffs"
            )
        console.print(together)
    if stats.event_types:
        types = Table(title="Event types (retained logs)")
        types.add_column("type")
        types.add_column("events", justify="right")
        for name, count in stats.event_types.items():
            types.add_row(name, str(count))
        console.print(types)


async def collect(scan_events: bool) -> SessionStats:
    """Compute the statistics against ``HUDDLE_REDIS_URL`` (or an empty embedded server)."""
    async with redis_config() as config, SessionManager(config) as manager:
        with console.status("reading sessions ..."):
            return await manager.get_stats(scan_events=scan_events)


def stats_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    scan_events: bool = typer.Option(
        True, "--scan-events/--no-scan-events", help="Also read every event log (types, workload, handoffs)."
    ),
) -> None:
    """Session analytics: creation rate, durations, events, workload, collaboration, time from broke to fixed."""
    stats = asyncio.run(collect(scan_events))
    if as_json:
        typer.echo(stats.model_dump_json(indent=2))
    else:
        render(stats)
