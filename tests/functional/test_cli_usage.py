"""`hatchway` as users start it (a new process each time): help, usage errors and exit codes.

None of these reaches a gateway: they stop at the command line, or before the first request.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hatchway.cli._common import app
from hatchway.cli._table import Commands
from tests.helpers import child_env

GROUPS = {path: node for path, node in app.walk().items() if isinstance(node, Commands)}


def hatchway(tmp_path: Path, *args: str, entry: str = "-m", **env: str) -> subprocess.CompletedProcess[str]:
    """Run the command line as ``python -m hatchway`` or as the console script's ``main()``."""
    start = ["-m", "hatchway"] if entry == "-m" else ["-c", "from hatchway.cli import main; main()"]
    return subprocess.run(
        [sys.executable, *start, *args],
        env=child_env(tmp_path, COLUMNS="200", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def listed(help_text: str) -> dict[str, str]:
    """The commands a help text lists, with their summaries."""
    rows = help_text.split("\ncommands:\n", 1)[1].splitlines()
    return dict(row.strip().split(None, 1) for row in rows if row.strip())


@pytest.mark.parametrize("entry", ["-m", "main()"])
def test_help_lists_every_command_and_group_with_its_summary(tmp_path: Path, entry: str) -> None:
    done = hatchway(tmp_path, "--help", entry=entry)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("usage: hatchway [OPTIONS] COMMAND ...")
    expected = {**{n: c.help for n, c in app.commands.items()}, **{n: g.help for n, g in app.groups.items()}}
    assert listed(done.stdout) == expected
    assert set(expected) == {"serve", "worker", "init", "run", "sync", "encrypt", "actions", "runs", "projects"} | {
        "tokens", "aws", "pipelines", "executions", "completion", "login", "logout"
    }  # fmt: skip
    for option in ("--url", "--token", "--project", "--env", "HATCHWAY_URL", "HATCHWAY_TOKEN", "HATCHWAY_PROJECT"):
        assert option in done.stdout


@pytest.mark.parametrize("path", [p for p in GROUPS if p], ids=" ".join)
def test_a_group_help_lists_its_commands(tmp_path: Path, path: tuple[str, ...]) -> None:
    group = GROUPS[path]
    done = hatchway(tmp_path, *path, "--help")
    assert done.returncode == 0
    assert listed(done.stdout) == {name: command.help for name, command in group.commands.items()}
    # Given no command, the group shows the same help on stderr and exits 2, as click's no_args_is_help did
    bare = hatchway(tmp_path, *path)
    assert bare.returncode == 2 and bare.stdout == "" and bare.stderr == done.stdout


def test_no_arguments_at_all_show_the_help_on_stderr(tmp_path: Path) -> None:
    done = hatchway(tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert set(listed(done.stderr)) == set(app.commands) | set(app.groups)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["runs", "list", "--bogus"], "hatchway runs list: error: unrecognized arguments: --bogus"),
        (["--bogus", "runs", "list"], "hatchway: error: unrecognized arguments: --bogus"),
        (["actions", "--bogus"], "hatchway actions: error: unrecognized arguments: --bogus"),
        (["frobnicate"], "hatchway: error: argument COMMAND: invalid choice: 'frobnicate'"),
        (["actions", "frobnicate"], "hatchway actions: error: argument COMMAND: invalid choice: 'frobnicate'"),
        (["runs", "wait", "r", "--timeout", "soon"], "argument --timeout: invalid float value: 'soon'"),
        (["serve", "--port", "http"], "argument --port: invalid int value: 'http'"),
        (["run"], "hatchway run: error: the following arguments are required: NAME"),
        (["run", "etl", "-p"], "argument --param/-p: expected one argument"),
        (["tokens", "create"], "the following arguments are required: --scope/-s"),
        (["actions", "create", "-f", "missing.json"], "argument --from-file/-f: File 'missing.json' does not exist."),
        (["pipelines", "apply", "-f", "."], "argument --file/-f: File '.' is a directory."),
        (["serve", "--url", "http://x"], "hatchway serve: error: unrecognized arguments: --url http://x"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_a_usage_error_is_a_usage_line_and_one_error_line(tmp_path: Path, args: list[str], error: str) -> None:
    done = hatchway(tmp_path, *args)
    assert done.returncode == 2 and done.stdout == ""
    usage, message = done.stderr.splitlines()
    assert usage.startswith("usage: hatchway")
    assert error in message


@pytest.mark.parametrize(
    "args",
    [
        ["run", "etl", "-p", "a=1", "-p", "novalue"],
        ["sync", "db", "list", "-p", "=nokey"],
        ["pipelines", "run", "etl", "--var", "novalue"],
    ],
    ids=" ".join,
)
def test_a_malformed_parameter_is_refused_before_any_request(tmp_path: Path, args: list[str]) -> None:
    # Given a gateway URL where nothing listens: the error must come before any request is made
    done = hatchway(tmp_path, *args, HATCHWAY_URL="http://127.0.0.1:9", HATCHWAY_TOKEN="t")
    bad = args[-1]
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"error: parameters are key=value, got {bad!r}\n"


def test_the_gateway_url_comes_from_the_environment_and_the_flag_wins(tmp_path: Path) -> None:
    from_env = hatchway(tmp_path, "actions", "list", HATCHWAY_URL="http://127.0.0.1:9", HATCHWAY_TOKEN="t")
    assert from_env.returncode == 1
    assert "cannot reach the gateway at http://127.0.0.1:9 (ConnectError)" in from_env.stderr
    flag = hatchway(tmp_path, "actions", "list", "--url", "http://127.0.0.1:7", HATCHWAY_URL="http://127.0.0.1:9")
    assert flag.returncode == 1 and "cannot reach the gateway at http://127.0.0.1:7" in flag.stderr
    assert "Traceback" not in from_env.stderr + flag.stderr


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    # Given a command that prints more than a pipe holds, read by a process that stops after one line
    script = (
        "from hatchway.cli._table import Commands, echo\n"
        "table = Commands('tool', 'A tool.')\n"
        "table.command('spam')(lambda: [echo('x' * 100) for _ in range(100_000)])\n"
        "table.main(['spam'])\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script],
        env=child_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as spam:
        assert spam.stdout is not None and spam.stderr is not None
        assert spam.stdout.readline() == "x" * 100 + "\n"
        spam.stdout.close()
        # Then it exits 1 (as click made it) without a traceback
        assert spam.wait(timeout=60) == 1
        assert spam.stderr.read() == ""


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("worker", "--executor", "nope"), {}),
        (("serve", "--executor", "nope", "--port", "0"), {}),
        (("worker",), {"HATCHWAY_RUN_EXECUTOR": "nope"}),
    ],
    ids=["worker option", "serve option", "environment"],
)
def test_an_unknown_executor_is_one_error_line_before_anything_starts(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    done = hatchway(tmp_path, *args, **env)
    assert done.returncode == 1 and done.stdout == ""
    assert "unknown executor 'nope'" in done.stderr and "process" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
