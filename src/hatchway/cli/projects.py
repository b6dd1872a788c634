"""``hatchway projects`` and ``hatchway tokens``: tenants and their credentials."""

from __future__ import annotations

from hatchway.cli._common import OUTPUT, api, client, projects_app, tokens_app
from hatchway.cli._output import chosen, print_data, print_fields, print_table
from hatchway.cli._table import REPEATED, Arg, echo

TYPE_CHECKING = False  # `import typing` costs ~4 ms of start-up; mypy treats this name as True
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _record(record: Any, output: str | None, as_json: bool) -> None:
    fmt = chosen(output, as_json, "json")
    print_fields(record) if fmt == "table" else print_data(record, fmt)


def _listing(items: list[Any], fmt: str, headers: list[str], row: Callable[[Any], list[Any]]) -> None:
    if fmt != "table":
        print_data(items, fmt)
    else:
        print_table(headers, [row(item) for item in items])


@projects_app.command("create", Arg("name"), Arg("--id", dest="project_id", help="proj_..."), *OUTPUT)
def projects_create(name: str, project_id: str | None, output: str | None, as_json: bool) -> None:
    """Create a project (needs the global admin token)."""
    with client() as hw:
        _record(api(lambda: hw.create_project(name, project_id)), output, as_json)


@projects_app.command("list", *OUTPUT)
def projects_list(output: str | None, as_json: bool) -> None:
    """List the projects the token can see (the global admin token: all of them)."""
    with client() as hw:
        items = api(lambda: hw.list_projects())
    _listing(items, chosen(output, as_json, "table"), ["id", "name", "created"],
             lambda p: [p["id"], p["name"], p["created_at"]])  # fmt: skip


@tokens_app.command(
    "create",
    Arg("--scope", "-s", kind=REPEATED, required=True, help="a scope (repeatable)"),
    Arg("--environment", kind=REPEATED, help="restrict to (repeatable)"),
    Arg("--expires-in", type=int, help="seconds until it expires"),
    Arg("--name", help="a label"),
    *OUTPUT,
)
def tokens_create(
    scope: list[str],
    environment: list[str] | None,
    expires_in: int | None,
    name: str | None,
    output: str | None,
    as_json: bool,
) -> None:
    """Create a project token; it is shown once."""
    with client() as hw:
        _record(api(lambda: hw.create_token(scope, environment or None, expires_in, name)), output, as_json)


@tokens_app.command("list", *OUTPUT)
def tokens_list(output: str | None, as_json: bool) -> None:
    """List a project's tokens (never their values)."""
    with client() as hw:
        items = api(lambda: hw.list_tokens())
    _listing(
        items, chosen(output, as_json, "json"), ["id", "name", "scopes", "environments", "expires", "last used"],
        lambda t: [t["id"], t.get("name"), ",".join(t["scopes"]), ",".join(t.get("environments") or ["*"]),
                   t.get("expires_at"), t.get("last_used_at")],
    )  # fmt: skip


@tokens_app.command("revoke", Arg("token_id"))
def tokens_revoke(token_id: str) -> None:
    """Revoke a token; it stops working at once."""
    with client() as hw:
        api(lambda: hw.revoke_token(token_id))
    echo(f"revoked {token_id}")
