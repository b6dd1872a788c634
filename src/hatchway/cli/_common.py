"""What the command modules share: the command table's root and groups, the connection options, and
the helpers that reach a gateway and print its answers.

Every command module imports this and :mod:`hatchway.cli._table` only, at the top; anything heavier
(httpx, rich, the client, the service) is imported inside the function that needs it, so that
``hatchway --help`` stays quick. The groups are made here, in the order ``hatchway --help`` lists
them, whichever module fills them.
"""

from __future__ import annotations

import os
import time

from hatchway.cli._table import REPEATED, Arg, Commands, echo, path

TYPE_CHECKING = False  # `import typing` costs ~4 ms of start-up; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from hatchway.client import Client


class Conn:
    """Connection options shared by the API commands."""

    url: str | None = None
    token: str | None = None
    project: str = "proj_local"
    env: str | None = None


_conn = Conn()


def _global(url: str | None, token: str | None, project: str, env: str | None) -> None:
    _conn.url, _conn.token, _conn.project, _conn.env = url, token, project, env


app = Commands(
    "hatchway",
    "hatchway: register container actions and run them over HTTPS.",
    options=[
        Arg("--url", envvar="HATCHWAY_URL", help="gateway URL"),
        Arg("--token", envvar="HATCHWAY_TOKEN", help="bearer token"),
        Arg("--project", envvar="HATCHWAY_PROJECT", default="proj_local", help="project id"),
        Arg("--env", envvar="HATCHWAY_ENVIRONMENT", help="environment"),
    ],
    callback=_global,
)
actions_app = app.group("actions", "Register and inspect actions.")
runs_app = app.group("runs", "Inspect, follow and cancel runs.")
projects_app = app.group("projects", "Projects (global admin).")
tokens_app = app.group("tokens", "Project tokens.")
aws_app = app.group("aws", "The aws backend's resources (AWS, or LocalStack / a moto server through AWS_ENDPOINT_URL).")
pipelines_app = app.group("pipelines", "Define and run pipelines (Buddy-style compositions of actions).")
executions_app = app.group("executions", "Inspect, approve and terminate pipeline executions.")

PARAM = Arg("--param", "-p", kind=REPEATED, metavar="KEY=VALUE", help="parameter as key=value (repeatable)")
HOME = Arg("--home", type=path, envvar="HATCHWAY_HOME", help="state directory")
EXECUTOR = Arg("--executor", help="process, docker or lambda-local")


def client() -> Client:
    from hatchway.client import Client

    return Client(_conn.url, _conn.token, project=_conn.project, environment=_conn.env)


def fail(message: str, code: int = 1) -> NoReturn:
    from rich.console import Console

    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False)
    raise SystemExit(code)


def print_json(data: Any) -> None:
    import json  # here and below, not at the top: 2 ms of every start-up, `hatchway --help` included

    from rich.console import Console

    Console().print_json(json.dumps(data))


def params(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"parameters are key=value, got {pair!r}")
        out[key] = value
    return out


def api(fn: Any) -> Any:
    """Run an API call, printing API errors in one line each instead of a traceback."""
    import httpx

    from hatchway.client import ApiError

    try:
        return fn()
    except ApiError as err:
        detail = f" ({err.details[0]['loc']}: {err.details[0]['msg']})" if err.details else ""
        extra = f" [exceptionId {err.exception_id}]" if err.exception_id else ""
        run = f" [run {err.run_id}]" if err.run_id else ""
        fail(f"{err.status_code} {err.error}: {err.message}{detail}{run}{extra}")
    except (OSError, httpx.TransportError) as err:
        fail(f"cannot reach the gateway at {_conn.url or os.environ.get('HATCHWAY_URL') or 'http://127.0.0.1:8080'}"
             f" ({type(err).__name__}); is `hatchway serve` running?")  # fmt: skip


def settings(**overrides: Any) -> Any:
    """The gateway's settings from the environment, with the options given; a bad one is one error line."""
    from hatchway.config import Settings
    from hatchway.errors import ValidationFailed

    try:
        return Settings.from_env(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationFailed as err:
        fail(err.message)


def watch(hw: Client, run_id: str, timeout: float | None = None) -> dict[str, Any]:
    """Poll a run with a live status line until it ends; exit 2 once ``timeout`` seconds have gone."""
    from rich.console import Console

    console = Console(stderr=True)
    started = time.monotonic()
    with console.status(f"{run_id} ENQUEUED") as status:
        delay = 0.05
        while True:
            run = api(lambda: hw.get_run(run_id))
            status.update(f"{run_id} {run['status']} attempt {run['attempt']}/{run['max_attempts']} "
                          f"{time.monotonic() - started:.1f}s")  # fmt: skip
            if run["status"] in ("SUCCESSFUL", "FAILED", "TERMINATED"):
                return dict(run)
            if timeout is not None and time.monotonic() - started > timeout:
                fail(f"{run_id} is still {run['status']} after {timeout:g} s", 2)
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)


def summarise(run: dict[str, Any]) -> None:
    import json

    echo(f"{run['id']} {run['status']} in {run.get('duration_ms')} ms (attempt {run['attempt']})")
    if run.get("ret") is not None:
        echo("ret: " + json.dumps(run["ret"]))
    if run.get("exports"):
        echo("exports: " + json.dumps(run["exports"]))
    if run.get("error"):
        err = run["error"]
        echo(
            f"error ({err['kind']}): {err['message']}"
            + (f" [exceptionId {err['exceptionId']}]" if err.get("exceptionId") else "")
        )
