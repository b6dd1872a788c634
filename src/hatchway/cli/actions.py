"""``hatchway actions``, and the commands that start actions: ``run``, ``sync`` and ``encrypt``."""

from __future__ import annotations

import sys

from hatchway.cli._common import PARAM, actions_app, api, app, client, fail, params, print_json, summarise, watch
from hatchway.cli._table import FLAG, JSON, Arg, echo, existing_file

TYPE_CHECKING = False  # `import typing` costs ~4 ms of start-up; mypy treats this name as True
if TYPE_CHECKING:
    from pathlib import Path


@actions_app.command(
    "create", Arg("--from-file", "-f", type=existing_file, required=True, metavar="FILE", help="action.json"), JSON
)
def actions_create(from_file: Path, as_json: bool) -> None:
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
    if as_json:
        print_json(record)
    else:
        echo(f"{record['name']} version {record['version']} ({record['digest']})")


@actions_app.command("list", Arg("--tag", help="only actions with this tag"), JSON)
def actions_list(tag: str | None, as_json: bool) -> None:
    """List actions (latest versions)."""
    with client() as hw:
        items = api(lambda: hw.list_actions(tag=tag))
    if as_json:
        print_json(items)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "version", "sync actions", "tags", "description")
    for item in items:
        spec = item["spec"]
        table.add_row(
            item["name"], str(item["version"]), ", ".join(spec.get("sync_actions", [])),
            ", ".join(spec.get("tags", [])),
            spec.get("short_description") or "",
        )  # fmt: skip
    Console().print(table)


@actions_app.command(
    "get", Arg("name"), Arg("--version", type=int, help="a version number"), Arg("--digest", help="a digest")
)
def actions_get(name: str, version: int | None, digest: str | None) -> None:
    """Show an action version."""
    with client() as hw:
        print_json(api(lambda: hw.get_action(name, version, digest)))


@actions_app.command("versions", Arg("name"))
def actions_versions(name: str) -> None:
    """List an action's versions."""
    with client() as hw:
        items = api(lambda: hw.list_versions(name))
    for item in items:
        echo(f"{item['version']:>4}  {item['digest']}  {item['created_at']}")


@actions_app.command("delete", Arg("name"))
def actions_delete(name: str) -> None:
    """Delete an action (its runs stay readable)."""
    with client() as hw:
        api(lambda: hw.delete_action(name))
    echo(f"deleted {name}")


# ---------------------------------------------------------------------------------------------
# running


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
) -> None:
    """Start an async run of an action."""
    with client() as hw:
        run = api(
            lambda: hw.start_run(
                name, params(param), version=version, timeout_seconds=timeout, retries=retries,
                idempotency_key=idempotency_key,
            )
        )  # fmt: skip
        if not wait:
            print_json(run) if as_json else echo(run["id"])
            return
        final = watch(hw, run["id"])
    if as_json:
        print_json(final)
    else:
        summarise(final)
    if final["status"] != "SUCCESSFUL":
        raise SystemExit(1)


@app.command("sync", Arg("name"), Arg("action"), PARAM, Arg("--version", type=int, help="call this version"))
def sync_cmd(name: str, action: str, param: list[str] | None, version: int | None) -> None:
    """Call a sync action and print its JSON answer."""
    with client() as hw:
        result = api(lambda: hw.call_sync(name, action, params(param), version=version))
    for entry in result.get("os", []):
        echo(f"[{entry['k']}] {entry['msg']}", err=True)
    print_json(result["ret"])


@app.command(
    "encrypt",
    Arg("value", help="the secret value ('-' reads stdin)"),
    Arg("--action", help="bind the ciphertext to this action"),
)
def encrypt_cmd(value: str, action: str | None) -> None:
    """Encrypt a secret value for this project and environment."""
    if value == "-":
        value = sys.stdin.read().rstrip("\n")
    with client() as hw:
        echo(api(lambda: hw.encrypt(value, action=action)))
