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

from hatchway.cli._output import FORMATS, clean, output_format, plain, print_data
from hatchway.cli._output import fail as fail  # the command modules take it from here
from hatchway.cli._table import JSON, REPEATED, Arg, Commands, echo, path

TYPE_CHECKING = False  # `import typing` costs ~4 ms of start-up; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Any

    from hatchway.client import Client


DEFAULT_PROJECT = "proj_local"
ENDED = ("SUCCESSFUL", "FAILED", "TERMINATED")


class Conn:
    """Connection options shared by the API commands."""

    url: str | None = None
    token: str | None = None
    project: str = DEFAULT_PROJECT
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
    version="hatchway {version}",
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
#: ``-o/--output`` and its older spelling ``--json``: every command that prints something takes both
OUTPUT = (
    Arg("--output", "-o", type=output_format, metavar="FORMAT", choices=FORMATS, help="table, json or yaml"),
    JSON,
)


def client() -> Client:
    """A client for the gateway the options, the environment or the profile name (in that order)."""
    from hatchway.cli import _profile
    from hatchway.client import Client

    url, stored = _profile.gateway(_conn.url)
    token = _conn.token or (stored.get("token") if not os.environ.get("HATCHWAY_TOKEN") else None)
    project = _conn.project
    if project == DEFAULT_PROJECT and not os.environ.get("HATCHWAY_PROJECT") and stored.get("project"):
        project = stored["project"]
    return Client(url, token, project=project, environment=_conn.env)


def print_json(data: Any) -> None:
    print_data(data, "json")


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
    from hatchway.client import ConnectionFailed, HatchwayError

    try:
        return fn()
    except ConnectionFailed as err:
        fail(f"cannot reach the gateway at {err.url} ({err.reason}); is `hatchway serve` running?")
    except HatchwayError as err:
        fail(describe(err) if err.status_code else err.message)


def describe(err: Any) -> str:
    """An API error as one message: status, error, message, where (422), run and exceptionId."""
    message = err.message
    if err.details:
        first = err.details[0]
        loc = ".".join(str(part) for part in first.get("loc") or [] if part != "body")
        if first.get("msg") and first["msg"] not in message:
            message += f" ({loc}: {first['msg']})" if loc else f" ({first['msg']})"
        elif loc and not message.startswith(loc):
            message = f"{loc}: {message}"
    run = f" [run {err.run_id}]" if err.run_id else ""
    extra = f" [exceptionId {err.exception_id}]" if err.exception_id else ""
    return f"{err.status_code} {err.error}: {message}{run}{extra}"


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
    from rich.text import Text

    console = Console(stderr=True)
    started = time.monotonic()
    with console.status(Text(f"{run_id} ENQUEUED")) as status:
        delay = 0.05
        while True:
            run = api(lambda: hw.get_run(run_id))
            status.update(Text(f"{run_id} {run['status']} attempt {attempt(run)} {time.monotonic() - started:.1f}s"))
            if run["status"] in ENDED:
                return dict(run)
            if timeout is not None and time.monotonic() - started > timeout:
                fail(f"{run_id} is still {run['status']} after {timeout:g} s", 2)
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)


def follow_run(hw: Client, run_id: str, after: int = 0, fmt: str = "line") -> Any:
    """Print a run's log entries after ``after`` as they are written; the run once it has ended."""

    def stream() -> None:
        for entry in hw.follow_logs(run_id, after=after):
            print_entry(entry, fmt)

    api(stream)
    return api(lambda: hw.get_run(run_id))


def print_entry(entry: Any, fmt: str = "line") -> None:
    """One log entry: ``HH:MM:SS.mmm kind message`` (local time), or one line of JSON, or a YAML item."""
    if fmt in ("json", "yaml"):
        import json

        if fmt == "json":
            echo(json.dumps(plain(entry), ensure_ascii=False))
        else:
            print_data([entry], "yaml")
        return
    stamp = time.strftime("%H:%M:%S", time.localtime(entry["ts"] / 1000)) + f".{entry['ts'] % 1000:03d}"
    echo(clean(f"{stamp} {entry['k']:<6} {entry['msg']}"))


def attempt(run: Any) -> str:
    """``attempt/max_attempts``; an attempt past the maximum (a lost worker's attempt is not counted
    against the retries) says how many were lost instead of showing "2/1"."""
    number, most = run["attempt"], run["max_attempts"]
    return f"{number}/{most}" if number <= most else f"{number} ({number - most} lost)"


def summarise(run: Any) -> None:
    import json

    echo(f"{run['id']} {run['status']} in {run.get('duration_ms')} ms (attempt {attempt(run)})")
    if run.get("ret") is not None:
        echo("ret: " + json.dumps(plain(run["ret"])))
    if run.get("exports"):
        echo("exports: " + json.dumps(plain(run["exports"])))
    if run.get("error"):
        err = run["error"]
        echo(
            clean(f"error ({err['kind']}): {err['message']}")
            + (f" [exceptionId {err['exceptionId']}]" if err.get("exceptionId") else "")
        )
