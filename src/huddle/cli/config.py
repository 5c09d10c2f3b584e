"""``huddle config validate|report``: check settings and the Redis they point at; non-zero exit on errors."""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError
from ..validation import ConfigurationReport, SessionConfigValidator, ValidationResult
from ..validation.validator import check_environment_name
from .common import console, err_console

config_app = typer.Typer(
    help="Validate settings (HUDDLE_* or a TOML file) and the Redis they point at.", no_args_is_help=True
)

ENV_OPTION = typer.Option(
    None, "--env", help="development | staging | production (default: $HUDDLE_ENV or development)."
)
FILE_OPTION = typer.Option(
    None, "--file", help="TOML settings file (its [huddle] table) instead of HUDDLE_*."
)
JSON_OPTION = typer.Option(False, "--json", help="Print JSON instead of tables.")
CONCURRENCY_OPTION = typer.Option(
    None, "--concurrency", min=1, help="Concurrent operations you expect per process (pool size check)."
)


def _environment(value: str | None) -> str:
    return check_environment_name(value or os.environ.get("HUDDLE_ENV") or "development")


def _source(file: Path | None) -> dict[str, Any] | None:
    """The [huddle] table of ``file``, or None to read HUDDLE_* from the environment."""
    if file is None:
        return None
    try:
        data = tomllib.loads(file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read settings from {file}: {exc}") from exc
    table = data.get("huddle", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: [huddle] must be a table")
    return table


def _issues_table(title: str, result: ValidationResult) -> Table | None:
    if not (result.errors or result.warnings or result.recommendations):
        return None
    table = Table(title=title, show_lines=False)
    for column in ("level", "code", "message"):
        table.add_column(column)
    for issue in result.errors:
        table.add_row("[red]error[/]", issue.code, escape(issue.message))
    for issue in result.warnings:
        table.add_row("[yellow]warning[/]", issue.code, escape(issue.message))
    for rec in result.recommendations:
        table.add_row(f"[cyan]{rec.priority}[/]", rec.code, escape(f"{rec.message} — {rec.reason}"))
    return table


def _checks_table(result: ValidationResult) -> Table:
    colour = {"pass": "green", "fail": "red", "warn": "yellow", "unknown": "magenta", "skipped": "dim"}
    table = Table(title="Checks")
    for column in ("check", "status", "detail"):
        table.add_column(column)
    for check in result.checks:
        table.add_row(check.name, f"[{colour[check.status]}]{check.status}[/]", escape(check.detail))
    return table


def _print(results: list[tuple[str, ValidationResult]]) -> None:
    for title, result in results:
        table = _issues_table(title, result)
        if table is not None:
            console.print(table)
    merged = ValidationResult(valid=True, checks=[check for _, result in results for check in result.checks])
    console.print(_checks_table(merged))


async def _validate(
    env: str, file: Path | None, concurrency: int | None
) -> tuple[ValidationResult, ValidationResult]:
    validator = SessionConfigValidator(config_file=file, expected_concurrency=concurrency)
    source = _source(file)
    config_result = await validator.validate_config(source)
    env_result = await validator.validate_environment(env, source)
    return config_result, env_result


def validate_command(
    env: str | None = ENV_OPTION,
    file: Path | None = FILE_OPTION,
    as_json: bool = JSON_OPTION,
    concurrency: int | None = CONCURRENCY_OPTION,
) -> None:
    """Validate the settings and the live server under an environment's rules; exit 1 on errors."""
    environment = _environment(env)
    with err_console.status(f"validating for {environment}..."):
        config_result, env_result = asyncio.run(_validate(environment, file, concurrency))
    valid = config_result.valid and env_result.valid
    if as_json:
        document = {
            "valid": valid,
            "environment": environment,
            "config": config_result.model_dump(mode="json"),
            "environment_validation": env_result.model_dump(mode="json"),
        }
        typer.echo(json.dumps(document, indent=2))
    else:
        _print([("Configuration", config_result), (f"Environment: {environment}", env_result)])
        verdict = "[green]valid[/]" if valid else "[red]invalid[/]"
        counts = f"{len(config_result.errors) + len(env_result.errors)} error(s), "
        counts += f"{len(config_result.warnings) + len(env_result.warnings)} warning(s)"
        console.print(f"{verdict} for {environment}: {counts}")
    raise typer.Exit(0 if valid else 1)


def _render_report(report: ConfigurationReport) -> None:
    console.print(f"[bold]Configuration report[/] for {escape(report.target)} ({report.environment})")
    if report.server is not None:
        facts = report.server.model_dump(exclude={"unknown", "target"})
        server = Table(title="Server", show_header=False)
        for name, value in facts.items():
            server.add_row(name, "-" if value is None else str(value))
        for name, why in report.server.unknown.items():
            server.add_row(name, f"[magenta]could not check[/]: {escape(why)}")
        console.print(server)
    _print(
        [
            ("Configuration", report.validation),
            (f"Environment: {report.environment}", report.environment_validation),
        ]
    )
    verdict = "[green]valid[/]" if report.valid else "[red]invalid[/]"
    console.print(f"{verdict}; {len(report.recommendations)} recommendation(s)")


def report_command(
    env: str | None = ENV_OPTION,
    file: Path | None = FILE_OPTION,
    as_json: bool = JSON_OPTION,
    concurrency: int | None = CONCURRENCY_OPTION,
) -> None:
    """Full configuration report: validation, environment rules, server facts, ranked recommendations."""
    environment = _environment(env)
    validator = SessionConfigValidator(config_file=file, expected_concurrency=concurrency)
    with err_console.status(f"building the {environment} report..."):
        report = asyncio.run(validator.generate_configuration_report(_source(file), environment))
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        _render_report(report)
    raise typer.Exit(0 if report.valid else 1)


config_app.command("validate")(validate_command)
config_app.command("report")(report_command)
