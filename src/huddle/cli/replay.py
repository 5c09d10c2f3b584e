"""``huddle replay``: list, show, play (live timeline), verify, export and import recordings.

``play`` and ``verify`` also take an exported ``.jsonl`` file instead of an id: it is imported first, so a
recording attached to a bug report plays without any Redis of your own (an embedded one is started).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..core.manager import SessionManager
from ..errors import InvalidReplayOptionsError, ReplayError, ReplayNotFoundError
from ..replay import ReplayFrame, ReplayInfo, ReplayOptions, SessionReplay
from .common import console, redis_config

replay_app = typer.Typer(help="Record-and-replay: list, show, play, verify, export and import recordings.")

T = TypeVar("T")


@asynccontextmanager
async def _replay() -> AsyncIterator[SessionReplay]:
    async with redis_config() as config, SessionManager(config) as manager, SessionReplay(manager) as replay:
        yield replay


def _run(work: Callable[[SessionReplay], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _replay() as replay:
            return await work(replay)

    return asyncio.run(main())


def _read_export(target: str) -> list[str] | None:
    """The lines of ``target`` if it names an export file (None: it is a replay id)."""
    try:
        path = Path(target)
        is_file = path.is_file()
    except (OSError, ValueError):  # a name no file system accepts (too long, NUL): not a file, an id
        return None
    return _read_lines(path) if is_file else None


def _read_lines(path: Path) -> list[str]:
    """The file's lines; unreadable or not text -> ``InvalidReplayOptionsError`` (one line, no traceback)."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InvalidReplayOptionsError(
            f"{path} is not a huddle replay export (not UTF-8 text: {exc.reason})"
        ) from None
    except OSError as exc:
        raise InvalidReplayOptionsError(f"cannot read {path}: {exc.strerror or exc}") from None


async def _resolve(replay: SessionReplay, target: str, lines: list[str] | None) -> str:
    """A replay id, or the id of the export ``lines`` after importing them (if not already here)."""
    if lines is None:
        return target
    existing = await replay.get_replay(_export_id(lines, Path(target)))
    return existing.replay_id if existing is not None else await replay.import_replay(lines)


def _export_id(lines: list[str], path: Path) -> str:
    import json

    try:
        return str(json.loads(lines[0])["replay_id"])
    except (IndexError, ValueError, KeyError, TypeError):
        raise InvalidReplayOptionsError(f"{path} is not a huddle replay export") from None


def _when(info: ReplayInfo) -> str:
    return info.started_at.strftime("%Y-%m-%d %H:%M:%S")


@replay_app.command("list")
def list_command(
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many recordings."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many (newest first)."),
) -> None:
    """Recordings, newest first."""
    infos = _run(lambda replay: replay.list_replays(limit=limit, offset=offset))
    table = Table(title="recordings", show_lines=False)
    for column in ("replay id", "session", "started", "status", "frames", "seq", "stored", "vs full state"):
        table.add_column(column)
    for info in infos:
        saved = f"-{1 - info.stored_bytes / info.raw_bytes:.0%}" if info.raw_bytes else "-"
        table.add_row(
            info.replay_id, info.session_id, _when(info), info.status, str(info.frames),
            f"{info.first_seq}..{info.last_seq}", f"{info.stored_bytes:,} B", saved,
        )  # fmt: skip
    console.print(table if infos else "[dim]no recordings[/]")


@replay_app.command("show")
def show_command(replay_id: str = typer.Argument(..., help="Replay id.")) -> None:
    """Everything known about one recording."""

    async def work(replay: SessionReplay) -> ReplayInfo:
        info = await replay.get_replay(replay_id)
        if info is None:
            await replay.start_replay(replay_id)  # raises the typed not-found error
        assert info is not None
        return info

    info = _run(work)
    table = Table(show_header=False, title=f"replay {info.replay_id}")
    for key, value in info.model_dump().items():
        table.add_row(key, escape(str(value)))
    console.print(table)


def _frame_line(frame: ReplayFrame, origin_ms: int) -> str:
    state = frame.state
    return (
        f"[dim]+{(frame.at_ms - origin_ms) / 1000:8.3f}s[/] [bold]#{frame.seq:<5}[/] "
        f"[cyan]{escape(frame.event.actor):<16}[/] [yellow]{escape(frame.event.type):<10}[/] "
        f"state=[magenta]{escape(state.state)}[/] agents={len(state.agents)}"
        + (f" cp={escape(state.checkpoint_id)}" if state.checkpoint_id else "")
    )


@replay_app.command("play")
def play_command(
    target: str = typer.Argument(..., help="Replay id, or an exported .jsonl file."),
    speed: float = typer.Option(
        1.0, "--speed", "-s", min=0, help="1 = recorded timing, 0 = as fast as possible."
    ),
    agent: Annotated[
        list[str] | None, typer.Option("--agent", "-a", help="Only this agent's events (repeatable).")
    ] = None,
    event_type: Annotated[
        list[str] | None, typer.Option("--type", "-t", help="Only events of this type (repeatable).")
    ] = None,
    from_seq: int | None = typer.Option(None, "--from-seq", min=0),
    to_seq: int | None = typer.Option(None, "--to-seq", min=0),
) -> None:
    """Play a recording as a live timeline, paced by its recorded timing divided by --speed."""
    options = ReplayOptions(
        speed=speed, agents=tuple(agent or ()) or None, event_types=tuple(event_type or ()) or None,
        from_seq=from_seq, to_seq=to_seq,
    )  # fmt: skip
    lines = _read_export(target)

    async def work(replay: SessionReplay) -> int:
        session = await replay.start_replay(await _resolve(replay, target, lines), options)
        info = session.info
        console.print(
            f"[bold]{info.replay_id}[/] session {escape(info.session_id)}: {info.frames} frames over "
            f"{info.duration_seconds:.1f}s, speed {speed or 'max'}"
        )
        origin = info.first_event_at
        origin_ms = int(origin.timestamp() * 1000) if origin is not None else 0
        columns = (TextColumn("playing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("play", total=info.frames)

            def on_frame(frame: ReplayFrame, n: int) -> None:
                progress.console.print(_frame_line(frame, origin_ms))
                progress.update(task, completed=frame.index + 1)

            return await replay.play_replay(session, on_frame)

    count = _run(work)
    console.print(f"[green]{count} frames played[/]")


@replay_app.command("verify")
def verify_command(target: str = typer.Argument(..., help="Replay id, or an exported .jsonl file.")) -> None:
    """Check the hash chain, frame order and every state checksum; exit 1 if anything is wrong."""
    lines = _read_export(target)

    async def work(replay: SessionReplay) -> tuple[bool, str]:
        with Progress(
            TextColumn("verifying"), BarColumn(), TimeElapsedColumn(), console=console, transient=True
        ):
            report = await replay.verify_replay(await _resolve(replay, target, lines))
        if report.ok:
            return True, f"[green]ok[/] {report.replay_id}: {report.frames_checked} frames verified"
        return False, (
            f"[red]FAILED[/] {report.replay_id}: frame {report.first_bad_frame}: {escape(report.reason or '')}"
        )

    ok, message = _run(work)
    console.print(message)
    if not ok:
        sys.exit(1)  # typer.Exit is swallowed under main()'s standalone_mode=False


@replay_app.command("export")
def export_command(
    replay_id: str = typer.Argument(..., help="Replay id."),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
) -> None:
    """Write a recording as JSON Lines (one frame a line), e.g. to attach to a bug report."""

    async def work(replay: SessionReplay) -> int:
        info = await replay.get_replay(replay_id)
        if info is None:  # before opening the output: a failed export must not leave an empty file behind
            raise ReplayNotFoundError(f"replay {replay_id!r} not found", replay_id=replay_id)
        total = info.frames
        try:
            handle = output.open("w") if output is not None else sys.stdout
        except OSError as exc:
            raise ReplayError(f"cannot write {output}: {exc.strerror or exc}") from None
        count = 0
        try:
            with Progress(
                TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), console=console,
                transient=True, disable=output is None,
            ) as progress:  # fmt: skip
                task = progress.add_task("export", total=total)
                async for line in replay.export_replay(replay_id):
                    handle.write(line + "\n")
                    count += 1
                    progress.update(task, completed=max(count - 1, 0))
        finally:
            if output is not None:
                handle.close()
        return count - 1

    frames = _run(work)
    if output is not None:
        console.print(f"[green]{frames} frames written to {escape(str(output))}[/]")


@replay_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="An exported .jsonl file.")],
    replay_id: str | None = typer.Option(None, "--as", help="Store under this id instead of the file's."),
) -> None:
    """Import an exported recording (verified before anything is written)."""
    lines = _read_lines(file)
    new_id = _run(lambda replay: replay.import_replay(lines, replay_id=replay_id))
    console.print(f"[green]imported[/] {new_id} ({len(lines) - 1} frames)")
