"""The ``huddle`` command line (Typer + Rich); each command group lives in its own module."""

from __future__ import annotations

import logging
import sys

import click
import typer
from rich.markup import escape
from typer._click.exceptions import ClickException as TyperClickException

from .. import __version__
from ..errors import HuddleError
from .common import err_console
from .config import config_app
from .demo import demo_command
from .mcp import mcp_command
from .migrate import migrate_command
from .replay import replay_app
from .serve import serve_command
from .stats import stats_command
from .sync import sync_app

app = typer.Typer(
    name="huddle",
    help="Multi-agent sessions coordinated through Redis.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("demo")(demo_command)
app.command("migrate")(migrate_command)
app.command("mcp")(mcp_command)
app.add_typer(replay_app, name="replay")
app.add_typer(config_app, name="config")
app.add_typer(sync_app, name="sync")
app.command("serve")(serve_command)
app.command("stats")(stats_command)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"huddle {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``huddle`` script: errors print one line (a traceback with ``--debug``)."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = app(args=args, standalone_mode=False)
        if isinstance(code, int) and code:  # without standalone mode click returns typer.Exit's code
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except HuddleError as exc:
        if "--debug" in args:
            raise
        err_console.print(f"[red]error[/] {escape(f'[{exc.code}] {exc.message}')}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except (click.ClickException, TyperClickException) as exc:
        # click's refusals (usage errors exit 2). This Typer vendors its own click, whose exceptions are not
        # click's subclasses: both kinds are caught, or a usage error would print as a crash and exit 1.
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        sys.exit(1)
    except Exception as exc:  # the CLI boundary: one readable line, not a traceback
        if "--debug" in args:
            raise
        err_console.print(
            f"[red]error[/] {escape(f'{type(exc).__name__}: {exc}')} (run with --debug for details)",
            soft_wrap=True,
        )
        sys.exit(1)
