"""``hatchway runs``: list, show, follow, cancel and wait for runs."""

from __future__ import annotations

import time

from hatchway.cli._common import api, client, print_json, runs_app, summarise, watch
from hatchway.cli._table import FLAG, JSON, LIMIT, STATUS, Arg, echo

TYPE_CHECKING = False  # `import typing` costs ~4 ms of start-up; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Any


@runs_app.command("list", Arg("--action", help="only this action"), STATUS, LIMIT, JSON)
def runs_list(action: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    with client() as hw:
        page = api(lambda: hw.list_runs(action=action, status=status, limit=limit))
    if as_json:
        print_json(page)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "action", "invoked", "status", "attempt", "created", "ms")
    for run in page["items"]:
        table.add_row(
            run["id"], f"{run['action']['name']}@{run['action']['version']}", run["invoked"], run["status"],
            f"{run['attempt']}/{run['max_attempts']}", run["created_at"], str(run.get("duration_ms") or ""),
        )  # fmt: skip
    Console().print(table)


@runs_app.command("get", Arg("run_id"))
def runs_get(run_id: str) -> None:
    """Show a run."""
    with client() as hw:
        print_json(api(lambda: hw.get_run(run_id)))


@runs_app.command("logs", Arg("run_id"), Arg("--follow", "-f", kind=FLAG, help="follow until the run ends"))
def runs_logs(run_id: str, follow: bool) -> None:
    """Print a run's log."""
    with client() as hw:
        if follow:
            api(lambda: _print_all(hw.follow_logs(run_id)))
            return
        after = 0
        while True:
            page = api(lambda after=after: hw.logs(run_id, after=after))
            for entry in page["items"]:
                _print_entry(entry)
                after = entry["seq"]
            if not page.get("next"):
                break


def _print_all(entries: Any) -> None:
    for entry in entries:
        _print_entry(entry)


def _print_entry(entry: dict[str, Any]) -> None:
    stamp = time.strftime("%H:%M:%S", time.localtime(entry["ts"] / 1000)) + f".{entry['ts'] % 1000:03d}"
    echo(f"{stamp} {entry['k']:<6} {entry['msg']}")


@runs_app.command("cancel", Arg("run_id"))
def runs_cancel(run_id: str) -> None:
    """Cancel a run (queued: at once; running: its process tree is stopped)."""
    with client() as hw:
        run = api(lambda: hw.cancel_run(run_id))
    echo(f"{run['id']} {run['status']}")


@runs_app.command("wait", Arg("run_id"), Arg("--timeout", type=float, default=3600.0, help="seconds"))
def runs_wait(run_id: str, timeout: float) -> None:
    """Wait for a run to end; exit 1 unless it succeeded."""
    with client() as hw:
        final = watch(hw, run_id, timeout)
    summarise(final)
    if final["status"] != "SUCCESSFUL":
        raise SystemExit(1)
