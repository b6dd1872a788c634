"""``hatchway pipelines`` and ``hatchway executions``: define, run and steer pipelines.

``pipelines apply -f`` takes YAML or JSON (YAML is read with ``yaml.safe_load``, which also reads
JSON). ``pipelines run --wait`` shows a live table of the steps until the execution ends, and
exits 0 when it ended SUCCESSFUL or WARNING, 1 otherwise.
"""

from __future__ import annotations

import time

from hatchway.cli._common import OUTPUT, api, client, executions_app, fail, params, pipelines_app
from hatchway.cli._output import chosen, clean, print_data, print_fields, print_table
from hatchway.cli._table import FLAG, JSON, LIMIT, REPEATED, STATUS, Arg, echo, existing_file

TYPE_CHECKING = False  # `import typing` costs ~4 ms of start-up; mypy treats this name as True
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from rich.table import Table

    from hatchway.client import Client

PIPELINE, EXECUTION_ID = Arg("pipeline"), Arg("execution_id")
ENDED = {"SUCCESSFUL", "WARNING", "FAILED", "TERMINATED"}
COLOURS = {
    "SUCCESSFUL": "green",
    "WARNING": "yellow",
    "FAILED": "red",
    "TERMINATED": "red",
    "INPROGRESS": "cyan",
    "WAITING_FOR_APPROVE": "magenta",
}


def _load(path: Path) -> dict[str, Any]:
    import yaml

    try:
        document = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        fail(f"{path} is not valid YAML or JSON ({type(err).__name__})")
    if not isinstance(document, dict):
        fail(f"{path} must hold one mapping (a pipeline definition)")
    return dict(document)


@pipelines_app.command(
    "apply",
    Arg("--file", "-f", type=existing_file, required=True, help="pipeline.yaml or .json"),
    Arg("--name", help="pipeline name (default: the file's name field)"),
    *OUTPUT,
)
def apply(file: Path, name: str | None, output: str | None, as_json: bool) -> None:
    """Create or update a pipeline from a YAML or JSON file."""
    document = _load(file)
    pipeline = name or document.get("name")
    if not isinstance(pipeline, str):
        fail("name the pipeline: a `name:` field in the file, or --name")
    with client() as hw:
        record = api(lambda: hw.put_pipeline(pipeline, document))
    fmt = chosen(output, as_json, "line")
    if fmt == "line":
        echo(f"{record['name']} version {record['version']} ({len(record['steps'])} steps)")
    else:
        print_fields(record) if fmt == "table" else print_data(record, fmt)


@pipelines_app.command("list", *OUTPUT)
def list_(output: str | None, as_json: bool) -> None:
    """List pipelines."""
    with client() as hw:
        items = api(lambda: hw.list_pipelines())
    fmt = chosen(output, as_json)
    if fmt != "table":
        print_data(items, fmt)
        return
    rows = [
        [item["name"], item["version"], " → ".join(s["name"] for s in item["steps"]), item.get("description")]
        for item in items
    ]
    print_table(["name", "version", "steps", "description"], rows)


def _record(record: Any, output: str | None, as_json: bool) -> None:
    fmt = chosen(output, as_json, "json")
    print_fields(record) if fmt == "table" else print_data(record, fmt)


@pipelines_app.command("get", Arg("name"), Arg("--version", type=int, help="a version number"), *OUTPUT)
def get(name: str, version: int | None, output: str | None, as_json: bool) -> None:
    """Show a pipeline's definition (secret values hidden)."""
    with client() as hw:
        _record(api(lambda: hw.get_pipeline(name, version)), output, as_json)


@pipelines_app.command("step", Arg("name"), Arg("step_name", metavar="STEP"), *OUTPUT)
def step(name: str, step_name: str, output: str | None, as_json: bool) -> None:
    """Show one step with the status of its last execution."""
    with client() as hw:
        _record(api(lambda: hw.get_pipeline_step(name, step_name)), output, as_json)


@pipelines_app.command("delete", Arg("name"))
def delete(name: str) -> None:
    """Delete a pipeline (its executions stay readable)."""
    with client() as hw:
        api(lambda: hw.delete_pipeline(name))
    echo(f"deleted {name}")


@pipelines_app.command(
    "run",
    Arg("name"),
    Arg("--var", "-v", kind=REPEATED, metavar="KEY=VALUE", help="settable variable as key=value (repeatable)"),
    Arg("--wait", kind=FLAG, help="follow the steps live until the execution ends"),
    Arg("--timeout", type=float, help="give up waiting after this many seconds"),
    JSON,
)
def run(name: str, var: list[str] | None, wait: bool, timeout: float | None, as_json: bool) -> None:
    """Start an execution of a pipeline."""
    variables = params(var)
    with client() as hw:
        execution = api(lambda: hw.start_execution(name, variables))
        if not wait:
            print_data(execution) if as_json else echo(execution["id"])
            return
        final = _follow(hw, name, execution["id"], timeout, quiet=as_json)
    if as_json:
        print_data(final)
    if final["status"] not in ("SUCCESSFUL", "WARNING"):
        raise SystemExit(1)


def _table(execution: dict[str, Any]) -> Table:
    """The live view of an execution; every cell is a Text, so server text is never read as markup."""
    from rich.table import Column, Table
    from rich.text import Text

    status = execution["status"]
    title = Text(f"{execution['pipeline']} {execution['id']} ").append(status, COLOURS.get(status, "white"))
    columns = [Column("step"), Column("status"), Column("run", no_wrap=True, min_width=30), Column("reason")]
    table = Table(*columns, title=title, title_justify="left")
    for state in execution["steps"]:
        table.add_row(
            Text(clean(state["name"])), Text(state["status"], COLOURS.get(state["status"], "white")),
            Text(state.get("run_id") or ""), Text(clean(state.get("status_reason") or "")),
        )  # fmt: skip
    return table


def _follow(hw: Client, name: str, execution_id: str, timeout: float | None, quiet: bool) -> dict[str, Any]:
    """Poll an execution, showing its steps live; the execution once it has ended."""
    from rich.console import Console
    from rich.live import Live

    console = Console(stderr=True)
    started = time.monotonic()
    told = False
    execution = api(lambda: hw.get_execution(name, execution_id))
    with Live(_table(execution), console=console, refresh_per_second=4, transient=quiet) as live:
        while execution["status"] not in ENDED:
            if timeout is not None and time.monotonic() - started > timeout:
                fail(f"{execution_id} is still {execution['status']} after {timeout:g} s", 2)
            if execution["status"] == "WAITING_FOR_APPROVE" and not told:
                live.console.print(
                    f"waiting for approval: hatchway executions approve {name} {execution_id}", markup=False
                )
                told = True
            time.sleep(0.25)
            execution = api(lambda: hw.get_execution(name, execution_id))
            live.update(_table(execution))
    return dict(execution)


@executions_app.command("list", PIPELINE, STATUS, LIMIT, *OUTPUT)
def executions_list(pipeline: str, status: str | None, limit: int, output: str | None, as_json: bool) -> None:
    """List a pipeline's executions, newest first."""
    with client() as hw:
        page = api(lambda: hw.list_executions(pipeline, status=status, limit=limit))
    fmt = chosen(output, as_json)
    if fmt != "table":
        print_data(page, fmt)
        return
    rows = [[item["id"], item["status"], f"v{item['version']}", item["created_at"]] for item in page["items"]]
    print_table(["id", "status", "version", "created"], rows, keep=(0, 1))


@executions_app.command("get", PIPELINE, EXECUTION_ID, *OUTPUT)
def executions_get(pipeline: str, execution_id: str, output: str | None, as_json: bool) -> None:
    """Show an execution and the status of each step."""
    with client() as hw:
        execution = api(lambda: hw.get_execution(pipeline, execution_id))
    fmt = chosen(output, as_json)
    if fmt != "table":
        print_data(execution, fmt)
        return
    echo(clean(f"{execution['pipeline']} {execution['id']} {execution['status']}"))
    rows = [
        [state["name"], state["status"], state.get("run_id"), state.get("status_reason")]
        for state in execution["steps"]
    ]
    print_table(["step", "status", "run", "reason"], rows, keep=(0, 1, 2))


def _changed(execution: dict[str, Any], line: str, output: str | None, as_json: bool) -> None:
    fmt = chosen(output, as_json, "line")
    if fmt == "line":
        echo(clean(line))
    else:
        print_fields(execution) if fmt == "table" else print_data(execution, fmt)


@executions_app.command("approve", PIPELINE, EXECUTION_ID, *OUTPUT)
def executions_approve(pipeline: str, execution_id: str, output: str | None, as_json: bool) -> None:
    """Approve an execution waiting at its approval gate."""
    with client() as hw:
        execution = api(lambda: hw.approve_execution(pipeline, execution_id))
    _changed(execution, f"{execution_id} approved; {execution['status']}", output, as_json)


@executions_app.command("terminate", PIPELINE, EXECUTION_ID, *OUTPUT)
def executions_terminate(pipeline: str, execution_id: str, output: str | None, as_json: bool) -> None:
    """Terminate an execution; its ON_TERMINATE steps then run."""
    with client() as hw:
        execution = api(lambda: hw.terminate_execution(pipeline, execution_id))
    _changed(execution, f"{execution_id} {execution['status']}", output, as_json)
