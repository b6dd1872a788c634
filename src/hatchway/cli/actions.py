"""``hatchway actions``, and the commands that start actions: ``run``, ``sync`` and ``encrypt``."""

from __future__ import annotations

import sys

from hatchway.cli._common import (
    OUTPUT,
    PARAM,
    actions_app,
    api,
    app,
    client,
    fail,
    follow_run,
    params,
    summarise,
    watch,
)
from hatchway.cli._output import FORMATS, chosen, clean, output_format, print_data, print_fields, print_table
from hatchway.cli._table import FLAG, JSON, Arg, echo, existing_file

TYPE_CHECKING = False  # `import typing` costs ~4 ms of start-up; mypy treats this name as True
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

PARAMS_FILE = Arg(
    "--params-file", type=existing_file, metavar="FILE",
    help="parameters from a JSON or YAML mapping ('-p' wins); numbers and booleans stay typed",
)  # fmt: skip


def _show(record: Any, output: str | None, as_json: bool, line: str) -> None:
    """One record: ``line`` by default, else as the format asked for."""
    fmt = chosen(output, as_json, "line")
    if fmt == "line":
        echo(clean(line))
    elif fmt == "table":
        print_fields(record)
    else:
        print_data(record, fmt)


@actions_app.command(
    "create", Arg("--from-file", "-f", type=existing_file, required=True, metavar="FILE", help="action.json"), *OUTPUT
)
def actions_create(from_file: Path, output: str | None, as_json: bool) -> None:
    """Register a new version of an action from its action.json."""
    import json

    from hatchway.domain.spec import resolve_local_paths

    try:
        document = json.loads(from_file.read_text())
    except ValueError as err:
        fail(f"{from_file} is not valid JSON ({err})")
    document = resolve_local_paths(document, from_file.resolve().parent)
    with client() as hw:
        record = api(lambda: hw.register_action(document))
    _show(record, output, as_json, f"{record['name']} version {record['version']} ({record['digest']})")


@actions_app.command("list", Arg("--tag", help="only actions with this tag"), *OUTPUT)
def actions_list(tag: str | None, output: str | None, as_json: bool) -> None:
    """List actions (latest versions)."""
    with client() as hw:
        items = api(lambda: hw.list_actions(tag=tag))
    fmt = chosen(output, as_json)
    if fmt != "table":
        print_data(items, fmt)
        return
    rows = [
        [item["name"], item["version"], ", ".join(item["spec"].get("sync_actions", [])),
         ", ".join(item["spec"].get("tags", [])), item["spec"].get("short_description") or ""]
        for item in items
    ]  # fmt: skip
    print_table(["name", "version", "sync actions", "tags", "description"], rows)


@actions_app.command(
    "get", Arg("name"), Arg("--version", type=int, help="a version number"), Arg("--digest", help="a digest"), *OUTPUT
)
def actions_get(name: str, version: int | None, digest: str | None, output: str | None, as_json: bool) -> None:
    """Show an action version."""
    with client() as hw:
        record = api(lambda: hw.get_action(name, version, digest))
    fmt = chosen(output, as_json, "json")
    print_fields(record) if fmt == "table" else print_data(record, fmt)


@actions_app.command("versions", Arg("name"), *OUTPUT)
def actions_versions(name: str, output: str | None, as_json: bool) -> None:
    """List an action's versions."""
    with client() as hw:
        items = api(lambda: hw.list_versions(name))
    fmt = chosen(output, as_json, "line")
    if fmt == "line":  # the lines of 0.1, which scripts read
        for item in items:
            echo(f"{item['version']:>4}  {item['digest']}  {item['created_at']}")
    elif fmt == "table":
        rows = [[item["version"], item["digest"], item["created_at"]] for item in items]
        print_table(["version", "digest", "created"], rows, keep=(0, 1))
    else:
        print_data(items, fmt)


@actions_app.command("delete", Arg("name"), Arg("--yes", "-y", kind=FLAG, help="do not ask for confirmation"))
def actions_delete(name: str, yes: bool) -> None:
    """Delete an action (its runs stay readable); asks first unless --yes."""
    if not yes:
        if not sys.stdin.isatty():
            fail(f"not deleting {name} without confirmation: give --yes (stdin is not a terminal)")
        sys.stderr.write(f"Delete the action {name} (every version)? Type its name to confirm: ")
        sys.stderr.flush()
        if sys.stdin.readline().strip() != name:
            fail("not deleted")
    with client() as hw:
        api(lambda: hw.delete_action(name))
    echo(f"deleted {name}")


# ---------------------------------------------------------------------------------------------
# running


def run_parameters(pairs: list[str] | None, params_file: Path | None) -> dict[str, Any]:
    """The parameters of ``--params-file`` (typed values), then ``-p key=value`` over them."""
    loaded: dict[str, Any] = {}
    if params_file is not None:
        import yaml

        try:
            document = yaml.safe_load(params_file.read_text())  # YAML reads JSON too
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            fail(f"{params_file} is not valid JSON or YAML ({type(err).__name__})")
        if not isinstance(document, dict):
            fail(f"{params_file} must hold one mapping of parameter names to values")
        for key, value in document.items():
            if not isinstance(value, str | int | float | bool):
                fail(f"{params_file}: the value of {key!r} must be a string, a number or a boolean")
            loaded[str(key)] = value
    return {**loaded, **params(pairs)}


@app.command(
    "run",
    Arg("name"),
    PARAM,
    Arg("--wait", kind=FLAG, help="wait for the end, with a live status line"),
    Arg("--version", type=int, help="run this version"),
    Arg("--timeout", type=int, help="timeout in seconds (only shortens the action's)"),
    Arg("--retries", type=int, help="retries after application errors"),
    Arg("--idempotency-key", help="Idempotency-Key header"),
    JSON,
    PARAMS_FILE,
    Arg("--follow", "-f", kind=FLAG, help="print the log as it is written until the run ends (implies --wait)"),
    Arg("--output", "-o", type=output_format, metavar="FORMAT", choices=FORMATS, help="table, json or yaml"),
    Arg(
        "--exit-status",
        kind=FLAG,
        help="exit 0 only if the run succeeded (implies --wait; --wait and --follow do so too)",
    ),
)
def run_cmd(
    name: str,
    param: list[str] | None,
    wait: bool,
    version: int | None,
    timeout: int | None,
    retries: int | None,
    idempotency_key: str | None,
    as_json: bool,
    params_file: Path | None,
    follow: bool,
    output: str | None,
    exit_status: bool,
) -> None:
    """Start an async run of an action; with --wait (or --follow) exit 0 only if it succeeded."""
    parameters = run_parameters(param, params_file)
    fmt = chosen(output, as_json, "line")
    with client() as hw:
        run = api(
            lambda: hw.start_run(
                name, parameters, version=version, timeout_seconds=timeout, retries=retries,
                idempotency_key=idempotency_key,
            )
        )  # fmt: skip
        if not (wait or follow or exit_status):
            _show(run, output, as_json, run["id"])
            return
        final = _follow_run(hw, run["id"]) if follow else watch(hw, run["id"])
    if fmt == "line":
        summarise(final)
    else:
        print_fields(final) if fmt == "table" else print_data(final, fmt)
    if final["status"] != "SUCCESSFUL":
        raise SystemExit(1)


def _follow_run(hw: Any, run_id: str) -> Any:
    echo(f"{run_id} started; its log follows", err=True)
    return follow_run(hw, run_id)


@app.command(
    "sync", Arg("name"), Arg("action"), PARAM, Arg("--version", type=int, help="call this version"), PARAMS_FILE,
    *OUTPUT,
)  # fmt: skip
def sync_cmd(
    name: str,
    action: str,
    param: list[str] | None,
    version: int | None,
    params_file: Path | None,
    output: str | None,
    as_json: bool,
) -> None:
    """Call a sync action and print its JSON answer."""
    parameters = run_parameters(param, params_file)
    with client() as hw:
        result = api(lambda: hw.call_sync(name, action, parameters, version=version))
    for entry in result.get("os", []):
        echo(clean(f"[{entry['k']}] {entry['msg']}"), err=True)
    fmt = chosen(output, as_json, "json")
    if fmt == "table" and isinstance(result["ret"], dict):
        print_fields(result["ret"])
    else:
        print_data(result["ret"], "json" if fmt == "table" else fmt)


@app.command(
    "encrypt",
    Arg("value", help="the secret value ('-' reads stdin)"),
    Arg("--action", help="bind the ciphertext to this action"),
    *OUTPUT,
)
def encrypt_cmd(value: str, action: str | None, output: str | None, as_json: bool) -> None:
    """Encrypt a secret value for this project and environment."""
    if value == "-":
        value = sys.stdin.read().rstrip("\n")
    with client() as hw:
        ciphertext = api(lambda: hw.encrypt(value, action=action))
    _show({"ciphertext": ciphertext}, output, as_json, ciphertext)
