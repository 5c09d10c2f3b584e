"""``huddle sync``: keep sessions mirrored on another Redis (run), sync them once, list every link (status)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from datetime import UTC, datetime
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from ..backend.connection import create_client
from ..config import RedisSettings
from ..core.keys import KeySpace
from ..errors import InvalidMigrationRequestError
from ..migration import CrossInstanceSession, MigrationConfig, SessionMigration, read_sync_links
from .common import console, err_console

sync_app = typer.Typer(help="Cross-instance sync: mirror sessions on another Redis.", no_args_is_help=True)

SESSION_IDS = typer.Argument(..., help="Session ids.")
SOURCE = typer.Option(..., "--from", help="redis:// URL the sessions live on.")
TARGET = typer.Option(..., "--to", help="redis:// URL to mirror them to.")
NAMESPACE = typer.Option(
    "huddle", "--namespace", envvar="HUDDLE_NAMESPACE", help="Namespace of the sessions."
)
TARGET_NAMESPACE = typer.Option(None, "--target-namespace", help="Namespace on the target (default: same).")


def _config(
    source: str, target: str, namespace: str, target_namespace: str | None, **extra: Any
) -> MigrationConfig:
    return MigrationConfig(
        source_url=source, target_url=target, namespace=namespace, target_namespace=target_namespace, **extra
    )


@sync_app.command("run")
def run_command(
    session_ids: list[str] = SESSION_IDS,
    source: str = SOURCE,
    target: str = TARGET,
    mode: str = typer.Option("real-time", "--mode", help="real-time | periodic"),
    interval: float = typer.Option(5.0, "--interval", help="Seconds between periodic syncs."),
    namespace: str = NAMESPACE,
    target_namespace: str | None = TARGET_NAMESPACE,
) -> None:
    """Sync the sessions until SIGINT/SIGTERM, drawing a live table of the links."""
    if mode not in ("real-time", "periodic"):
        raise InvalidMigrationRequestError(f"--mode must be real-time or periodic, not {mode!r}")
    config = _config(source, target, namespace, target_namespace, sync_interval=interval)
    asyncio.run(_run(config, session_ids, mode))


async def _run(config: MigrationConfig, session_ids: list[str], mode: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with SessionMigration(config) as migration:
            for sid in dict.fromkeys(session_ids):
                await migration.setup_cross_instance_sync(sid, "target", mode)
            err_console.print(f"syncing {len(session_ids)} session(s) ({mode}); Ctrl-C or SIGTERM stops")
            with Live(links_table(migration.list_cross_instance_sessions()), console=console) as live:
                while not stop.is_set():
                    live.update(links_table(migration.list_cross_instance_sessions()))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)
                live.update(links_table(migration.list_cross_instance_sessions()))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    err_console.print("stopped")


@sync_app.command("once")
def once_command(
    session_ids: list[str] = SESSION_IDS,
    source: str = SOURCE,
    target: str = TARGET,
    namespace: str = NAMESPACE,
    target_namespace: str | None = TARGET_NAMESPACE,
) -> None:
    """Sync the sessions once (only what the target lacks) and print the events applied."""
    asyncio.run(_once(_config(source, target, namespace, target_namespace), session_ids))


async def _once(config: MigrationConfig, session_ids: list[str]) -> None:
    total = 0
    async with SessionMigration(config) as migration:
        for sid in dict.fromkeys(session_ids):
            applied = await migration.sync_session(sid)
            total += applied
            console.print(f"{sid}: {applied} events applied")
    console.print(f"total: {total} events applied")


@sync_app.command("status")
def status_command(
    source: str | None = typer.Option(
        None, "--from", help="redis:// URL of the source (default: HUDDLE_REDIS_URL)."
    ),
    session_id: str | None = typer.Option(None, "--session", help="Only the links of this session."),
    namespace: str = NAMESPACE,
    index_shards: int = typer.Option(16, "--index-shards", help="Must match the managers' setting."),
) -> None:
    """Every sync link of every live process, as published on the source."""
    url = source or os.environ.get("HUDDLE_REDIS_URL")
    if not url:
        raise InvalidMigrationRequestError("give --from URL (or set HUDDLE_REDIS_URL)")
    links = asyncio.run(_status(url, KeySpace(namespace, index_shards), session_id))
    if not links:
        console.print("no sync links")
        return
    console.print(links_table(links, owners=True))


async def _status(url: str, keys: KeySpace, session_id: str | None) -> list[CrossInstanceSession]:
    client = create_client(RedisSettings(redis_url=url))
    try:
        return await read_sync_links(client, keys, session_id)
    finally:
        await client.aclose()


def _age(at: datetime | None) -> str:
    if at is None:
        return "-"
    return f"{max((datetime.now(UTC) - at).total_seconds(), 0.0):.1f}s ago"


def links_table(links: list[CrossInstanceSession], owners: bool = False) -> Table:
    """The links as a Rich table."""
    table = Table(title=f"{len(links)} sync link(s)")
    columns = [
        "session",
        "to",
        "mode",
        "status",
        "seq",
        "syncs",
        "events",
        "full copies",
        "errors",
        "last sync",
    ]
    if owners:
        columns += ["heartbeat", "owner"]
    for name in columns:
        table.add_column(name)
    for link in links:
        row = [
            link.session_id,
            link.target or link.target_instance,
            link.sync_mode,
            link.status,
            str(link.last_synced_seq),
            str(link.syncs),
            str(link.events_applied),
            str(link.full_copies),
            str(link.errors) + (f" ({link.last_error})" if link.last_error else ""),
            _age(link.last_sync_at),
        ]
        if owners:
            row += [_age(link.heartbeat_at), link.owner or "-"]
        table.add_row(*row)
    return table
