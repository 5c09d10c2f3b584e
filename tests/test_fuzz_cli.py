"""Fuzzing the command line: random options and values for the replay, config, migrate, stats and sync commands
must end with a clear error line and a non-zero exit (or succeed), never an uncaught exception or traceback."""

from __future__ import annotations

import random
from pathlib import Path

import click
import pytest
import typer
from typer._click.exceptions import ClickException as TyperClickException
from typer.testing import CliRunner

from huddle import EmbeddedRedis, HuddleError, SessionManager, SessionReplay
from huddle.cli import app, main

INVOCATIONS = 400
COMMANDS: dict[tuple[str, ...], tuple[list[str], list[str]]] = {
    # command: (options that take a value, flags)
    ("replay", "list"): (["--limit", "--offset"], []),
    ("replay", "show"): ([], []),
    ("replay", "play"): (["--speed", "--agent", "--type", "--from-seq", "--to-seq"], []),
    ("replay", "verify"): ([], []),
    ("replay", "export"): (["--output"], []),
    ("replay", "import"): (["--as"], []),
    ("config", "validate"): (["--env", "--file", "--concurrency"], ["--json"]),
    ("config", "report"): (["--env", "--file", "--concurrency"], ["--json"]),
    ("migrate",): (
        [
            "--to",
            "--since",
            "--sessions",
            "--conflict",
            "--resume",
            "--status",
            "--rollback",
            "--namespace",
            "--target-namespace",
            "--batch-size",
            "--copy-mode",
        ],
        ["--validate"],
    ),
    ("stats",): ([], ["--json", "--scan-events"]),
    ("sync", "once"): (["--to", "--namespace", "--target-namespace"], []),
    ("sync", "status"): (["--session", "--index-shards"], []),
}
POSITIONAL = {("replay", "show"), ("replay", "play"), ("replay", "verify"), ("replay", "export"),
              ("replay", "import"), ("sync", "once")}  # fmt: skip


@pytest.fixture
async def replay_id(manager: SessionManager) -> str:
    replay = SessionReplay(manager)
    sid = await manager.create_session("a1", record=True)
    for n in range(5):
        await manager.emit_event(sid, {"type": "modified", "data": {"n": n}}, "a1")
    rid = await replay.stop_recording(sid)
    await replay.close()
    return rid


def _values(rng: random.Random, tmp: Path, rid: str, sid: str) -> list[str]:
    return [
        rid, sid, "r-missing", "", " ", "-1", "0", "3", "1e309", "nan", "99999999999999999999", "abc", "{x}",
        "a" * 300, "\x00", "é", "--", "-x", "2026-13-45", "yesterday", "full", "skip", "dump", "overwrite",
        "redis://127.0.0.1:1/0", "redis://:secret@127.0.0.1:1/0", "http://x", "rediss://127.0.0.1:1/0",
        str(tmp / "missing.jsonl"), str(tmp / "garbage.jsonl"), str(tmp / "cut.jsonl"), str(tmp / "bad.toml"),
        str(tmp), str(tmp / "out.jsonl"), "/dev/null", "/proc/self/mem", rng.choice(["HUDDLE_X", "PATH"]),
        "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(1, 20))),
    ]  # fmt: skip


def _run(args: list[str]) -> str:
    """What ``huddle.cli.main`` would do with ``args``, as an outcome name: 'ok', 'typed <code>' (a HuddleError,
    one line), 'usage' (click's own refusal, exit 2), or 'untyped <Exception>' (main prints it as a bare
    'error TypeName: ...' line: what this fuzzer hunts)."""
    try:
        app(args=args, standalone_mode=False)
    except typer.Exit:
        return "ok"
    except HuddleError as exc:
        return f"typed {exc.code}"
    except (click.ClickException, click.exceptions.Abort, TyperClickException):
        return "usage"  # click's refusal (typer vendors its own click: both are caught)
    except Exception as exc:  # the finding
        return f"untyped {type(exc).__name__}: {str(exc)[:100]}"
    return "ok"


def test_fuzzed_cli_arguments_get_typed_errors(
    redis_server: EmbeddedRedis,
    namespace: str,
    manager: SessionManager,
    replay_id: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # fuzzed output paths are relative: keep them out of the checkout
    runner = CliRunner()
    env = {"HUDDLE_REDIS_URL": redis_server.url, "HUDDLE_NAMESPACE": namespace, "HUDDLE_CONNECT_TIMEOUT": "0.5",
           "HUDDLE_RETRY_ATTEMPTS": "0"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    export = runner.invoke(
        app, ["replay", "export", replay_id, "--output", str(tmp_path / "good.jsonl")], env=env
    )
    assert export.exit_code == 0, export.output
    good = (tmp_path / "good.jsonl").read_text()
    (tmp_path / "cut.jsonl").write_text(good[: len(good) // 2])
    (tmp_path / "garbage.jsonl").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "bad.toml").write_text("[huddle\nredis_url = 3\nnope = [")
    rng = random.Random(20)
    sid = "s-fuzz"
    crashes: list[str] = []
    exits: dict[str, int] = {}
    for _ in range(INVOCATIONS):
        command = rng.choice(list(COMMANDS))
        options, flags = COMMANDS[command]
        values = _values(rng, tmp_path, replay_id, sid)
        args = list(command)
        if command in POSITIONAL and rng.random() < 0.9:
            args.append(rng.choice(values))
        for _ in range(rng.randrange(0, 4)):
            if options and rng.random() < 0.8:
                args += [rng.choice(options), rng.choice(values)]
            elif flags:
                args.append(rng.choice(flags))
        if command == ("migrate",) and "--to" not in args and "--status" not in args:
            args += ["--to", "redis://127.0.0.1:1/0"]  # never a reachable target: nothing is migrated here
        outcome = _run(args)
        exits[outcome] = exits.get(outcome, 0) + 1
        if outcome.startswith("untyped"):
            crashes.append(f"{args!r:.160}: {outcome}")
    print(f"CLI arguments: {INVOCATIONS} invocations, outcomes {exits}, untyped={len(crashes)}")
    assert crashes == [], "\n".join(crashes[:20])


@pytest.mark.parametrize(
    "args",
    [
        ["replay", "list", "--limit", "abc"],  # BadParameter
        ["replay", "show"],  # MissingParameter
        ["replay", "show", "r-1", "--bogus"],  # NoSuchOption
        ["no-such-command"],
    ],
)
def test_usage_errors_exit_2_with_clicks_usage_message(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``huddle.cli.main`` (the installed script) shows a usage error as click does: usage line, exit 2, and not
    as a crash line (Typer raises its vendored click's exceptions, which are not click's subclasses)."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert "Usage:" in err and "Error:" in err
    assert "for details" not in err  # the line main prints for an unexpected exception
