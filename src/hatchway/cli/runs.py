"""``hatchway runs``: list, show, follow, cancel and wait for runs."""

from __future__ import annotations

import time

from hatchway.cli._common import OUTPUT, api, attempt, client, fail, follow_run, print_entry, runs_app, summarise, watch
from hatchway.cli._output import age, chosen, print_data, print_fields, print_table
from hatchway.cli._table import FLAG, LIMIT, STATUS, Arg, echo

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(value: str) -> float:
    """A ``--since`` value: a number of seconds, or with a unit (``90s``, ``10m``, ``2h``, ``1d``)."""
    import argparse

    number, unit = (value[:-1], value[-1]) if value and value[-1] in _UNITS else (value, "s")
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration (like 90s, 10m, 2h, 1d)") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is negative")
    return seconds


@runs_app.command("list", Arg("--action", help="only this action"), STATUS, LIMIT, *OUTPUT)
def runs_list(action: str | None, status: str | None, limit: int, output: str | None, as_json: bool) -> None:
    """List runs, newest first."""
    with client() as hw:
        page = api(lambda: hw.list_runs(action=action, status=status, limit=limit))
    fmt = chosen(output, as_json)
    if fmt != "table":
        print_data(page, fmt)
        return
    rows = [
        [run["id"], f"{run['action']['name']}@{run['action']['version']}", run["invoked"], run["status"],
         attempt(run), age(run["created_at"]), run.get("duration_ms")]
        for run in page["items"]
    ]  # fmt: skip
    print_table(["id", "action", "invoked", "status", "attempt", "age", "ms"], rows, keep=(0, 3, 4, 5, 6))


@runs_app.command("get", Arg("run_id"), *OUTPUT)
def runs_get(run_id: str, output: str | None, as_json: bool) -> None:
    """Show a run."""
    with client() as hw:
        run = api(lambda: hw.get_run(run_id))
    fmt = chosen(output, as_json, "json")
    print_fields(run) if fmt == "table" else print_data(run, fmt)


@runs_app.command(
    "logs",
    Arg("run_id"),
    Arg("--follow", "-f", kind=FLAG, help="follow until the run ends"),
    Arg("--tail", "-n", type=int, metavar="N", help="only the last N lines"),
    Arg("--since", type=duration, metavar="DURATION", help="only lines of the last DURATION (90s, 10m, 2h)"),
    Arg("--exit-status", kind=FLAG, help="with --follow: exit 1 unless the run succeeded"),
    *OUTPUT,
)
def runs_logs(
    run_id: str,
    follow: bool,
    tail: int | None,
    since: float | None,
    exit_status: bool,
    output: str | None,
    as_json: bool,
) -> None:
    """Print a run's log (-o json: one JSON object a line)."""
    fmt = chosen(output, as_json, "line")
    if tail is not None and tail < 0:
        fail("--tail takes a number of lines, 0 or more", 2)
    if exit_status and not follow:
        fail("--exit-status needs --follow (it reports how the followed run ended)", 2)
    cutoff = None if since is None else (time.time() - since) * 1000
    with client() as hw:
        entries = list(api(lambda: hw.tail_logs(run_id, tail) if tail is not None else list(hw.iter_logs(run_id))))
        shown = [entry for entry in entries if cutoff is None or entry["ts"] >= cutoff]
        for entry in shown:
            print_entry(entry, fmt)
        if not follow:
            return
        last = entries[-1]["seq"] if entries else 0
        final = follow_run(hw, run_id, after=last, fmt=fmt)
    if exit_status and final["status"] != "SUCCESSFUL":
        raise SystemExit(1)


@runs_app.command("cancel", Arg("run_id"), *OUTPUT)
def runs_cancel(run_id: str, output: str | None, as_json: bool) -> None:
    """Cancel a run (queued: at once; running: its process tree is stopped)."""
    with client() as hw:
        run = api(lambda: hw.cancel_run(run_id))
    fmt = chosen(output, as_json, "line")
    if fmt == "line":
        echo(f"{run['id']} {run['status']}")
    else:
        print_fields(run) if fmt == "table" else print_data(run, fmt)


@runs_app.command("wait", Arg("run_id"), Arg("--timeout", type=float, default=3600.0, help="seconds"), *OUTPUT)
def runs_wait(run_id: str, timeout: float, output: str | None, as_json: bool) -> None:
    """Wait for a run to end; exit 1 unless it succeeded."""
    with client() as hw:
        final = watch(hw, run_id, timeout)
    fmt = chosen(output, as_json, "line")
    if fmt == "line":
        summarise(final)
    else:
        print_fields(final) if fmt == "table" else print_data(final, fmt)
    if final["status"] != "SUCCESSFUL":
        raise SystemExit(1)
