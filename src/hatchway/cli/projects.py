"""``hatchway projects`` and ``hatchway tokens``: tenants and their credentials."""

from __future__ import annotations

from hatchway.cli._common import api, client, print_json, projects_app, tokens_app
from hatchway.cli._table import REPEATED, Arg, echo


@projects_app.command("create", Arg("name"), Arg("--id", dest="project_id", help="proj_..."))
def projects_create(name: str, project_id: str | None) -> None:
    """Create a project (needs the global admin token)."""
    with client() as hw:
        print_json(api(lambda: hw.create_project(name, project_id)))


@tokens_app.command(
    "create",
    Arg("--scope", "-s", kind=REPEATED, required=True, help="a scope (repeatable)"),
    Arg("--environment", kind=REPEATED, help="restrict to (repeatable)"),
    Arg("--expires-in", type=int, help="seconds until it expires"),
    Arg("--name", help="a label"),
)
def tokens_create(scope: list[str], environment: list[str] | None, expires_in: int | None, name: str | None) -> None:
    """Create a project token; it is shown once."""
    with client() as hw:
        print_json(api(lambda: hw.create_token(scope, environment or None, expires_in, name)))


@tokens_app.command("list")
def tokens_list() -> None:
    """List a project's tokens (never their values)."""
    with client() as hw:
        print_json(api(lambda: hw.list_tokens()))


@tokens_app.command("revoke", Arg("token_id"))
def tokens_revoke(token_id: str) -> None:
    """Revoke a token; it stops working at once."""
    with client() as hw:
        api(lambda: hw.revoke_token(token_id))
    echo(f"revoked {token_id}")
