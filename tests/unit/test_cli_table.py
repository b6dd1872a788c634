"""The command line's parser, checked against the typer command line it replaced (nothing runs).

``TYPER_COMMANDS`` and ``TYPER_GLOBAL_OPTIONS`` were derived once from typer's click tree, just
before the move to argparse: every command, positional, option spelling, kind, type, required flag,
environment variable and default users had. Each test builds command lines from them and checks
what :meth:`Commands.resolve` hands the command.
"""

from __future__ import annotations

import inspect
import io
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from hatchway.cli._common import app
from hatchway.cli._table import FLAG, NEGATABLE, REPEATED, VALUE, Arg, Command, Commands, echo
from hatchway.config import ENV_VARS

Flags = tuple[str, ...]
#: (parameter, kind, type, required, environment variable, default)
Option = tuple[str, str, str, bool, str | None, Any]

TYPER_GLOBAL_OPTIONS: dict[Flags, Option] = {
    ("--url",): ("url", VALUE, "str", False, "HATCHWAY_URL", None),
    ("--token",): ("token", VALUE, "str", False, "HATCHWAY_TOKEN", None),
    ("--project",): ("project", VALUE, "str", False, "HATCHWAY_PROJECT", "proj_local"),
    ("--env",): ("env", VALUE, "str", False, "HATCHWAY_ENVIRONMENT", None),
}


TYPER_COMMANDS: dict[tuple[str, ...], tuple[list[str], dict[Flags, Option]]] = {
    ("serve",): (
        [],
        {
            ("--host",): ("host", VALUE, "str", False, None, "127.0.0.1"),
            ("--port",): ("port", VALUE, "int", False, None, 8080),
            ("--home",): ("home", VALUE, "path", False, "HATCHWAY_HOME", None),
            ("--workers",): ("workers", VALUE, "int", False, None, None),
            ("--processes",): ("processes", VALUE, "int", False, None, None),
            ("--executor",): ("executor", VALUE, "str", False, None, None),
            ("--backend",): ("backend", VALUE, "str", False, None, None),
            ("--examples",): ("examples", NEGATABLE, "bool", False, None, False),
            ("--examples-dir",): ("examples_dir", VALUE, "path", False, None, None),
            ("--tls-cert",): ("tls_cert", VALUE, "path", False, None, None),
            ("--tls-key",): ("tls_key", VALUE, "path", False, None, None),
            ("--dev-cert",): ("dev_cert", FLAG, "bool", False, None, False),
            ("--log-level",): ("log_level", VALUE, "str", False, None, None),
        },
    ),
    ("worker",): (
        [],
        {
            ("--home",): ("home", VALUE, "path", False, "HATCHWAY_HOME", None),
            ("--workers",): ("workers", VALUE, "int", False, None, None),
            ("--executor",): ("executor", VALUE, "str", False, None, None),
            ("--metrics-port",): ("metrics_port", VALUE, "int", False, None, None),
            ("--metrics-host",): ("metrics_host", VALUE, "str", False, None, "127.0.0.1"),
        },
    ),
    ("init",): (
        ["name"],
        {
            ("--dir",): ("directory", VALUE, "path", False, None, None),
        },
    ),
    ("run",): (
        ["name"],
        {
            ("--param", "-p"): ("param", REPEATED, "str", False, None, None),
            ("--wait",): ("wait", FLAG, "bool", False, None, False),
            ("--version",): ("version", VALUE, "int", False, None, None),
            ("--timeout",): ("timeout", VALUE, "int", False, None, None),
            ("--retries",): ("retries", VALUE, "int", False, None, None),
            ("--idempotency-key",): ("idempotency_key", VALUE, "str", False, None, None),
            ("--json",): ("as_json", FLAG, "bool", False, None, False),
        },
    ),
    ("sync",): (
        ["name", "action"],
        {
            ("--param", "-p"): ("param", REPEATED, "str", False, None, None),
            ("--version",): ("version", VALUE, "int", False, None, None),
        },
    ),
    ("encrypt",): (
        ["value"],
        {
            ("--action",): ("action", VALUE, "str", False, None, None),
        },
    ),
    ("actions", "create"): (
        [],
        {
            ("--from-file", "-f"): ("from_file", VALUE, "file", True, None, None),
            ("--json",): ("as_json", FLAG, "bool", False, None, False),
        },
    ),
    ("actions", "list"): (
        [],
        {
            ("--tag",): ("tag", VALUE, "str", False, None, None),
            ("--json",): ("as_json", FLAG, "bool", False, None, False),
        },
    ),
    ("actions", "get"): (
        ["name"],
        {
            ("--version",): ("version", VALUE, "int", False, None, None),
            ("--digest",): ("digest", VALUE, "str", False, None, None),
        },
    ),
    ("actions", "versions"): (
        ["name"],
        {},
    ),
    ("actions", "delete"): (
        ["name"],
        {},
    ),
    ("runs", "list"): (
        [],
        {
            ("--action",): ("action", VALUE, "str", False, None, None),
            ("--status",): ("status", VALUE, "str", False, None, None),
            ("--limit",): ("limit", VALUE, "int", False, None, 20),
            ("--json",): ("as_json", FLAG, "bool", False, None, False),
        },
    ),
    ("runs", "get"): (
        ["run_id"],
        {},
    ),
    ("runs", "logs"): (
        ["run_id"],
        {
            ("--follow", "-f"): ("follow", FLAG, "bool", False, None, False),
        },
    ),
    ("runs", "cancel"): (
        ["run_id"],
        {},
    ),
    ("runs", "wait"): (
        ["run_id"],
        {
            ("--timeout",): ("timeout", VALUE, "float", False, None, 3600.0),
        },
    ),
    ("projects", "create"): (
        ["name"],
        {
            ("--id",): ("project_id", VALUE, "str", False, None, None),
        },
    ),
    ("tokens", "create"): (
        [],
        {
            ("--scope", "-s"): ("scope", REPEATED, "str", True, None, None),
            ("--environment",): ("environment", REPEATED, "str", False, None, None),
            ("--expires-in",): ("expires_in", VALUE, "int", False, None, None),
            ("--name",): ("name", VALUE, "str", False, None, None),
        },
    ),
    ("tokens", "list"): (
        [],
        {},
    ),
    ("tokens", "revoke"): (
        ["token_id"],
        {},
    ),
    ("aws", "bootstrap"): (
        [],
        {
            ("--table",): ("table", VALUE, "str", False, "HATCHWAY_TABLE_NAME", None),
            ("--key",): ("key", VALUE, "str", False, "HATCHWAY_KMS_KEY_ID", None),
            ("--bucket",): ("bucket", VALUE, "str", False, "HATCHWAY_BUCKET", None),
        },
    ),
    ("aws", "teardown"): (
        [],
        {
            ("--yes", "-y"): ("yes", FLAG, "bool", False, None, False),
            ("--dry-run",): ("dry_run", FLAG, "bool", False, None, False),
        },
    ),
    ("aws", "migrate"): (
        [],
        {
            ("--table",): ("table", VALUE, "str", False, "HATCHWAY_TABLE_NAME", None),
        },
    ),
    ("pipelines", "apply"): (
        [],
        {
            ("--file", "-f"): ("file", VALUE, "file", True, None, None),
            ("--name",): ("name", VALUE, "str", False, None, None),
            ("--json",): ("as_json", FLAG, "bool", False, None, False),
        },
    ),
    ("pipelines", "list"): (
        [],
        {
            ("--json",): ("as_json", FLAG, "bool", False, None, False),
        },
    ),
    ("pipelines", "get"): (
        ["name"],
        {
            ("--version",): ("version", VALUE, "int", False, None, None),
        },
    ),
    ("pipelines", "step"): (
        ["name", "step_name"],
        {},
    ),
    ("pipelines", "delete"): (
        ["name"],
        {},
    ),
    ("pipelines", "run"): (
        ["name"],
        {
            ("--var", "-v"): ("var", REPEATED, "str", False, None, None),
            ("--wait",): ("wait", FLAG, "bool", False, None, False),
            ("--timeout",): ("timeout", VALUE, "float", False, None, None),
            ("--json",): ("as_json", FLAG, "bool", False, None, False),
        },
    ),
    ("executions", "list"): (
        ["pipeline"],
        {
            ("--status",): ("status", VALUE, "str", False, None, None),
            ("--limit",): ("limit", VALUE, "int", False, None, 20),
            ("--json",): ("as_json", FLAG, "bool", False, None, False),
        },
    ),
    ("executions", "get"): (
        ["pipeline", "execution_id"],
        {
            ("--json",): ("as_json", FLAG, "bool", False, None, False),
        },
    ),
    ("executions", "approve"): (
        ["pipeline", "execution_id"],
        {},
    ),
    ("executions", "terminate"): (
        ["pipeline", "execution_id"],
        {},
    ),
}


_OUTPUT: dict[Flags, Option] = {("--output", "-o"): ("output", VALUE, "format", False, None, None)}
_OUTPUT_AND_JSON: dict[Flags, Option] = {**_OUTPUT, ("--json",): ("as_json", FLAG, "bool", False, None, False)}
_PARAMS_FILE: dict[Flags, Option] = {("--params-file",): ("params_file", VALUE, "file", False, None, None)}

#: What came after the typer command line (issue 19): new commands, and new options of old ones
#: (``-o/--output`` on every command that prints something, ``--json`` kept beside it).
ADDED_COMMANDS: dict[tuple[str, ...], tuple[list[str], dict[Flags, Option]]] = {
    ("completion",): (["shell"], {}),
    ("login",): ([], {("--with-token",): ("with_token", FLAG, "bool", False, None, False)}),
    ("logout",): ([], {}),
    ("run",): (
        [],
        {
            **_PARAMS_FILE,
            ("--follow", "-f"): ("follow", FLAG, "bool", False, None, False),
            **_OUTPUT,
            ("--exit-status",): ("exit_status", FLAG, "bool", False, None, False),
        },
    ),
    ("sync",): ([], {**_PARAMS_FILE, **_OUTPUT_AND_JSON}),
    ("actions", "create"): ([], _OUTPUT),
    ("actions", "list"): ([], _OUTPUT),
    ("actions", "get"): ([], _OUTPUT_AND_JSON),
    ("actions", "versions"): ([], _OUTPUT_AND_JSON),
    ("actions", "delete"): ([], {("--yes", "-y"): ("yes", FLAG, "bool", False, None, False)}),
    ("runs", "list"): ([], _OUTPUT),
    ("runs", "get"): ([], _OUTPUT_AND_JSON),
    ("runs", "logs"): (
        [],
        {
            ("--tail", "-n"): ("tail", VALUE, "int", False, None, None),
            ("--since",): ("since", VALUE, "duration", False, None, None),
            ("--exit-status",): ("exit_status", FLAG, "bool", False, None, False),
            **_OUTPUT_AND_JSON,
        },
    ),
    ("runs", "cancel"): ([], _OUTPUT_AND_JSON),
    ("runs", "wait"): ([], _OUTPUT_AND_JSON),
    ("projects", "create"): ([], _OUTPUT_AND_JSON),
    ("projects", "list"): ([], _OUTPUT_AND_JSON),
    ("tokens", "create"): ([], _OUTPUT_AND_JSON),
    ("tokens", "list"): ([], _OUTPUT_AND_JSON),
    ("pipelines", "apply"): ([], _OUTPUT),
    ("pipelines", "list"): ([], _OUTPUT),
    ("pipelines", "get"): ([], _OUTPUT_AND_JSON),
    ("pipelines", "step"): ([], _OUTPUT_AND_JSON),
    ("executions", "list"): ([], _OUTPUT),
    ("executions", "get"): ([], _OUTPUT),
    ("executions", "approve"): ([], _OUTPUT_AND_JSON),
    ("executions", "terminate"): ([], _OUTPUT_AND_JSON),
    ("encrypt",): ([], _OUTPUT_AND_JSON),
}
#: every command with every positional and option it takes: the typer ones and those added since
COMMAND_TABLE = {
    path: (
        [*TYPER_COMMANDS.get(path, ([], {}))[0], *ADDED_COMMANDS.get(path, ([], {}))[0]],
        {**TYPER_COMMANDS.get(path, ([], {}))[1], **ADDED_COMMANDS.get(path, ([], {}))[1]},
    )
    for path in [*TYPER_COMMANDS, *ADDED_COMMANDS]
}

COMMANDS = {path: node for path, node in app.walk().items() if isinstance(node, Command)}
ENVVARS = [
    (path, flags, option)
    for path, (_, options) in [((), ([], TYPER_GLOBAL_OPTIONS)), *COMMAND_TABLE.items()]
    for flags, option in options.items()
    if option[4]
]


@pytest.fixture(autouse=True)
def _no_hatchway_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        if name.startswith("HATCHWAY_"):
            monkeypatch.delenv(name, raising=False)


def sample(option: Option, tmp_path: Path, n: int = 0) -> tuple[str, Any]:
    """A command-line value for an option and what the command should receive for it."""
    dest, _, kind_type = option[0], option[1], option[2]
    if kind_type == "int":
        return str(7 + n), 7 + n
    if kind_type == "float":
        return f"{2.5 + n}", 2.5 + n
    if kind_type == "path":
        return f"some/{dest}{n}", Path(f"some/{dest}{n}")
    if kind_type == "format":
        return ["table", "json", "yaml"][n % 3], ["table", "json", "yaml"][n % 3]
    if kind_type == "duration":
        return f"{90 + n}s", 90.0 + n
    if kind_type == "file":
        made = tmp_path / f"{dest}{n}.json"
        made.write_text("{}")
        return str(made), made
    return f"{dest}-{n}", f"{dest}-{n}"


def command_line(path: tuple[str, ...], tmp_path: Path, spelling: int) -> tuple[list[str], dict[str, Any]]:
    """Every positional and every option of a command; each option spelled its ``spelling``-th way
    (a repeatable option is given once per spelling)."""
    positionals, options = COMMAND_TABLE[path]
    argv = [*path, *(f"{name}-given" for name in positionals)]
    expected: dict[str, Any] = {name: f"{name}-given" for name in positionals}
    for flags, option in options.items():
        dest, kind = option[0], option[1]
        if kind == REPEATED:
            given = [sample(option, tmp_path, n) for n in range(len(flags))]
            argv += [part for flag, (text, _) in zip(flags, given, strict=True) for part in (flag, text)]
            expected[dest] = [value for _, value in given]
        elif kind in (FLAG, NEGATABLE):
            argv.append(flags[spelling % len(flags)])
            expected[dest] = True
        else:
            text, expected[dest] = sample(option, tmp_path)
            argv += [flags[spelling % len(flags)], text]
    return argv, expected


def test_the_same_commands_and_groups_as_typer() -> None:
    assert set(COMMANDS) == set(COMMAND_TABLE)
    groups = {path for path, node in app.walk().items() if isinstance(node, Commands) and path}
    assert groups == {path[:-1] for path in COMMAND_TABLE if len(path) > 1}


@pytest.mark.parametrize("path", sorted(COMMAND_TABLE), ids=" ".join)
@pytest.mark.parametrize("spelling", [0, 1], ids=["long", "short"])
def test_a_command_takes_every_option_it_took(path: tuple[str, ...], spelling: int, tmp_path: Path) -> None:
    # Given every positional and option the typer command took, each spelled one of its ways
    argv, expected = command_line(path, tmp_path, spelling)
    # When the command line is resolved
    command, values, _ = app.resolve(argv)
    # Then the command gets exactly its parameters, with the values given, converted to their types
    assert command is COMMANDS[path]
    assert values == expected
    assert set(inspect.signature(command.handler).parameters) == set(values)


@pytest.mark.parametrize("path", sorted(COMMAND_TABLE), ids=" ".join)
def test_an_option_left_out_has_its_old_default_and_a_required_one_is_asked_for(
    path: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    positionals, options = COMMAND_TABLE[path]
    required = {flags: sample(option, tmp_path)[0] for flags, option in options.items() if option[3]}

    def resolved(*leaving_out: Flags) -> dict[str, Any]:
        given = [part for flags, text in required.items() if flags not in leaving_out for part in (flags[0], text)]
        return app.resolve([*path, *(f"{name}-given" for name in positionals), *given])[1]

    # Given only the positionals and the required options, every other option has its old default
    values = resolved()
    for flags, (dest, _, _, is_required, _, default) in options.items():
        if not is_required:
            assert values[dest] == default, flags
    # and leaving out a required option is a usage error naming it
    for flags in required:
        with pytest.raises(SystemExit) as exited:
            resolved(flags)
        assert exited.value.code == 2
        assert f"the following arguments are required: {'/'.join(flags)}" in capsys.readouterr().err


def test_examples_can_be_turned_off_again() -> None:
    assert app.resolve(["serve", "--examples", "--no-examples"])[1]["examples"] is False
    assert app.resolve(["serve", "--no-examples", "--examples"])[1]["examples"] is True


@pytest.mark.parametrize(("path", "flags", "option"), ENVVARS, ids=[f[0] for _, f, _ in ENVVARS])
def test_an_environment_variable_fills_an_absent_option(
    path: tuple[str, ...], flags: Flags, option: Option, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest, envvar, default = option[0], option[4], option[5]
    assert envvar is not None
    # the top level's options are tried on `tokens list`, a command with no arguments of its own
    command = [*path, *(f"{name}-given" for name in COMMAND_TABLE[path][0])] if path else ["tokens", "list"]

    def resolved(*given: str) -> Any:
        _, values, shared = app.resolve([*command, *given] if path else [*given, *command])
        return {**values, **shared}[dest]

    from_env, from_env_value = sample(option, tmp_path, 1)
    given, given_value = sample(option, tmp_path, 2)
    # Given the variable set: it fills the option
    monkeypatch.setenv(envvar, from_env)
    assert resolved() == from_env_value
    # and the option, when given, wins over it
    assert resolved(flags[0], given) == given_value
    # An empty variable counts as unset
    monkeypatch.setenv(envvar, "")
    assert resolved() == default


def test_every_environment_variable_the_command_line_reads_is_documented_in_config() -> None:
    assert {option[4] for _, _, option in ENVVARS} <= set(ENV_VARS)


@pytest.mark.parametrize("path", [p for p in sorted(COMMAND_TABLE) if COMMANDS[p].shares_options], ids=" ".join)
def test_gateway_options_are_accepted_before_and_after_the_command(path: tuple[str, ...], tmp_path: Path) -> None:
    argv, _ = command_line(path, tmp_path, 0)
    before = app.resolve(["--url", "https://before", "--project", "proj_b", *argv])[2]
    assert before == {"url": "https://before", "token": None, "project": "proj_b", "env": None}
    after = app.resolve(["--url", "https://before", *argv, "--url", "https://after", "--env", "staging"])[2]
    assert after == {"url": "https://after", "token": None, "project": "proj_local", "env": "staging"}


@pytest.mark.parametrize("path", [p for p in sorted(COMMAND_TABLE) if not COMMANDS[p].shares_options], ids=" ".join)
def test_commands_that_do_not_talk_to_a_gateway_take_its_options_only_before_them(
    path: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, _ = command_line(path, tmp_path, 0)
    assert app.resolve(["--url", "https://x", *argv])[2]["url"] == "https://x"
    with pytest.raises(SystemExit) as exited:
        app.resolve([*argv, "--url", "https://x"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --url https://x" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted(COMMAND_TABLE), ids=" ".join)
def test_a_command_help_lists_every_argument_and_option_with_its_help(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        app.resolve([*path, "--help"])
    assert exited.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    command = COMMANDS[path]
    assert f"usage: hatchway {' '.join(path)} " in shown and " ".join(command.help.split()) in shown
    for arg in command.args:
        assert all(flag in shown for flag in arg.option_strings) and arg.help in shown, arg.flags
    if command.shares_options:
        assert all(option.flags[0] in shown for option in app.options)


HELP_SNAPSHOT = Path(__file__).parent / "snapshots" / "cli_help.txt"


def every_help(capsys: pytest.CaptureFixture[str]) -> str:
    """``--help`` of the top level, every group and every command, in the table's order."""
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    parts = [f"# hatchway --help of every command and group, COLUMNS=100, Python {python}"]
    for path in app.walk():
        with pytest.raises(SystemExit) as exited:
            app.resolve([*path, "--help"])
        printed = capsys.readouterr()
        assert exited.value.code == 0 and printed.err == ""
        parts.append(" ".join(("====", "hatchway", *path, "--help")) + f"\n{printed.out}")
    return "\n".join(parts)


def test_every_help_text_is_the_one_users_know(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moving commands between modules must not change a byte of what ``--help`` prints. A deliberate
    change regenerates the snapshot (its diff goes into the commit)::

        HATCHWAY_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/unit/test_cli_table.py -k help_text
    """
    monkeypatch.setenv("COLUMNS", "100")
    actual = every_help(capsys)
    if os.environ.get("HATCHWAY_UPDATE_SNAPSHOTS") == "1":
        HELP_SNAPSHOT.parent.mkdir(exist_ok=True)
        HELP_SNAPSHOT.write_text(actual)
    expected = HELP_SNAPSHOT.read_text()
    if expected.split("\n", 1)[0] != actual.split("\n", 1)[0]:
        pytest.skip("argparse lays help out differently on this Python; the snapshot was taken on another")
    assert actual == expected


def test_param_repeats_and_keeps_its_order() -> None:
    _, values, _ = app.resolve(["run", "etl", "-p", "a=1", "--param", "b=2", "-p", "a=3", "-pc=4"])
    assert values["param"] == ["a=1", "b=2", "a=3", "c=4"]


def test_interrupted_commands_exit_130_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    table = Commands("tool", "A tool.")

    @table.command("wait")
    def wait() -> None:
        """Wait."""
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exited:
        table.main(["wait"])
    assert exited.value.code == 130
    assert capsys.readouterr().err == ""


def test_echo_drops_terminal_escapes_unless_writing_to_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, expected in [(io.StringIO(), "red alert\n"), (Terminal(), "\033[31mred\033[0m alert\n")]:
        monkeypatch.setattr("sys.stdout", stream)
        echo("\033[31mred\033[0m alert")
        assert stream.getvalue() == expected


def test_an_option_is_named_after_its_long_flag_unless_told() -> None:
    assert Arg("--idempotency-key").dest == "idempotency_key"
    assert Arg("-p", "--param").dest == "param"
    assert Arg("--json", dest="as_json").dest == "as_json"
    assert Arg("name").dest == "name" and Arg("name").is_positional
    assert Arg("--examples", kind=NEGATABLE).option_strings == ("--examples", "--no-examples")
    assert Arg("--tag", kind=VALUE).option_strings == ("--tag",)
