"""The ``hatchway`` command line: serve the gateway, run workers, and talk to a gateway's API.

Commands are declared in :mod:`hatchway.cli._table`'s table and parsed with argparse. Heavy modules
(the server, uvicorn, httpx, rich, the service) are imported inside the commands that need them, so
``hatchway --help`` stays quick. The server URL and token come from ``--url``/``--token``, then
``HATCHWAY_URL``/``HATCHWAY_TOKEN``, then ``$HATCHWAY_HOME/token``.
"""

from __future__ import annotations

import os
import sys
import time

from hatchway.cli._table import FLAG, JSON, LIMIT, NEGATABLE, REPEATED, STATUS, Arg, Commands, echo, existing_file, path
from hatchway.cli.pipelines import executions_app, pipelines_app

TYPE_CHECKING = False  # `import typing` costs ~4 ms of start-up; mypy treats this name as True
if TYPE_CHECKING:
    from pathlib import Path
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
app.add_group(pipelines_app)
app.add_group(executions_app)

PARAM = Arg("--param", "-p", kind=REPEATED, metavar="KEY=VALUE", help="parameter as key=value (repeatable)")
HOME = Arg("--home", type=path, envvar="HATCHWAY_HOME", help="state directory")
EXECUTOR = Arg("--executor", help="process, docker or lambda-local")


def _client() -> Client:
    from hatchway.client import Client

    return Client(_conn.url, _conn.token, project=_conn.project, environment=_conn.env)


def _fail(message: str, code: int = 1) -> NoReturn:
    from rich.console import Console

    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False)
    raise SystemExit(code)


def _print_json(data: Any) -> None:
    import json  # here and below, not at the top: 2 ms of every start-up, `hatchway --help` included

    from rich.console import Console

    Console().print_json(json.dumps(data))


def _params(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"parameters are key=value, got {pair!r}")
        out[key] = value
    return out


def _api(fn: Any) -> Any:
    """Run an API call, printing API errors in one line each instead of a traceback."""
    import httpx

    from hatchway.client import ApiError

    try:
        return fn()
    except ApiError as err:
        detail = f" ({err.details[0]['loc']}: {err.details[0]['msg']})" if err.details else ""
        extra = f" [exceptionId {err.exception_id}]" if err.exception_id else ""
        run = f" [run {err.run_id}]" if err.run_id else ""
        _fail(f"{err.status_code} {err.error}: {err.message}{detail}{run}{extra}")
    except (OSError, httpx.TransportError) as err:
        _fail(f"cannot reach the gateway at {_conn.url or os.environ.get('HATCHWAY_URL') or 'http://127.0.0.1:8080'}"
              f" ({type(err).__name__}); is `hatchway serve` running?")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# serving


def _settings(**overrides: Any) -> Any:
    from hatchway.config import Settings
    from hatchway.errors import ValidationFailed

    try:
        return Settings.from_env(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationFailed as err:
        _fail(err.message)


@app.command(
    "serve",
    Arg("--host", default="127.0.0.1", help="address to bind"),
    Arg("--port", type=int, default=8080, help="port to bind"),
    HOME,
    Arg("--workers", type=int, help="worker threads (0: API only)"),
    EXECUTOR,
    Arg("--backend", help="embedded or aws"),
    Arg("--examples", kind=NEGATABLE, default=False, help="register the example actions"),
    Arg("--examples-dir", type=path, help="where the examples are"),
    Arg("--tls-cert", type=path, help="TLS certificate (PEM)"),
    Arg("--tls-key", type=path, help="TLS private key (PEM)"),
    Arg("--dev-cert", kind=FLAG, help="HTTPS with a development certificate made under $HATCHWAY_HOME/tls"),
    Arg("--log-level", help="log level"),
    shares_options=False,
)
def serve(
    host: str,
    port: int,
    home: Path | None,
    workers: int | None,
    executor: str | None,
    backend: str | None,
    examples: bool,
    examples_dir: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    dev_cert: bool,
    log_level: str | None,
) -> None:
    """Serve the gateway (API + worker pool): SQLite and a key file, or DynamoDB and KMS with --backend aws."""
    from hatchway.server import run_server

    settings = _settings(home=home, workers=workers, executor=executor, backend=backend, log_level=log_level)
    if (tls_cert is None) != (tls_key is None):
        _fail("give both --tls-cert and --tls-key")
    if dev_cert:
        if tls_cert is not None:
            _fail("--dev-cert makes its own certificate; leave out --tls-cert/--tls-key")
        import socket

        from hatchway.cli.tls import dev_certificate

        made = dev_certificate(settings.home / "tls", [host, socket.gethostname()])
        tls_cert, tls_key = made.cert, made.key
        echo(f"HTTPS with a development certificate: trust {made.ca} (curl --cacert, SSL_CERT_FILE)")
    from hatchway.errors import ValidationFailed

    try:
        run_server(
            settings,
            host=host,
            port=port,
            load_examples=examples,
            examples_dir=examples_dir,
            tls_cert=str(tls_cert) if tls_cert else None,
            tls_key=str(tls_key) if tls_key else None,
        )
    except ValidationFailed as err:  # the configuration cannot work here (the sandbox, say)
        _fail(err.message)


@app.command("worker", HOME, Arg("--workers", type=int, help="worker threads"), EXECUTOR, shares_options=False)
def worker(home: Path | None, workers: int | None, executor: str | None) -> None:
    """Run a worker pool on a gateway's home without serving HTTP."""
    from hatchway.errors import ValidationFailed
    from hatchway.worker import run_worker

    try:
        run_worker(_settings(home=home, workers=workers, executor=executor))
    except ValidationFailed as err:
        _fail(err.message)


@app.command(
    "init",
    Arg("name", help="action name (lowercase, digits, '-')"),
    Arg("--dir", type=path, dest="directory", help="where to create it (default ./NAME)"),
    shares_options=False,
)
def init(name: str, directory: Path | None) -> None:
    """Scaffold an action project: action.json, an entry script, a Dockerfile and a test."""
    from hatchway.cli.scaffold import scaffold

    try:
        target = scaffold(name, directory or path(name))
    except (ValueError, FileExistsError) as err:
        _fail(str(err))
    echo(f"created {target}; register it with: hatchway actions create --from-file {target / 'action.json'}")


# ---------------------------------------------------------------------------------------------
# actions


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
        _fail(f"{from_file} is not valid JSON ({err})")
    document = resolve_local_paths(document, from_file.resolve().parent)
    with _client() as hw:
        record = _api(lambda: hw.register_action(document))
    if as_json:
        _print_json(record)
    else:
        echo(f"{record['name']} version {record['version']} ({record['digest']})")


@actions_app.command("list", Arg("--tag", help="only actions with this tag"), JSON)
def actions_list(tag: str | None, as_json: bool) -> None:
    """List actions (latest versions)."""
    with _client() as hw:
        items = _api(lambda: hw.list_actions(tag=tag))
    if as_json:
        _print_json(items)
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
    with _client() as hw:
        _print_json(_api(lambda: hw.get_action(name, version, digest)))


@actions_app.command("versions", Arg("name"))
def actions_versions(name: str) -> None:
    """List an action's versions."""
    with _client() as hw:
        items = _api(lambda: hw.list_versions(name))
    for item in items:
        echo(f"{item['version']:>4}  {item['digest']}  {item['created_at']}")


@actions_app.command("delete", Arg("name"))
def actions_delete(name: str) -> None:
    """Delete an action (its runs stay readable)."""
    with _client() as hw:
        _api(lambda: hw.delete_action(name))
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
    with _client() as hw:
        run = _api(
            lambda: hw.start_run(
                name, _params(param), version=version, timeout_seconds=timeout, retries=retries,
                idempotency_key=idempotency_key,
            )
        )  # fmt: skip
        if not wait:
            _print_json(run) if as_json else echo(run["id"])
            return
        final = _watch(hw, run["id"])
    if as_json:
        _print_json(final)
    else:
        _summarise(final)
    if final["status"] != "SUCCESSFUL":
        raise SystemExit(1)


def _watch(hw: Client, run_id: str, timeout: float | None = None) -> dict[str, Any]:
    from rich.console import Console

    console = Console(stderr=True)
    started = time.monotonic()
    with console.status(f"{run_id} ENQUEUED") as status:
        delay = 0.05
        while True:
            run = _api(lambda: hw.get_run(run_id))
            status.update(f"{run_id} {run['status']} attempt {run['attempt']}/{run['max_attempts']} "
                          f"{time.monotonic() - started:.1f}s")  # fmt: skip
            if run["status"] in ("SUCCESSFUL", "FAILED", "TERMINATED"):
                return dict(run)
            if timeout is not None and time.monotonic() - started > timeout:
                _fail(f"{run_id} is still {run['status']} after {timeout:g} s", 2)
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)


def _summarise(run: dict[str, Any]) -> None:
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


@app.command("sync", Arg("name"), Arg("action"), PARAM, Arg("--version", type=int, help="call this version"))
def sync_cmd(name: str, action: str, param: list[str] | None, version: int | None) -> None:
    """Call a sync action and print its JSON answer."""
    with _client() as hw:
        result = _api(lambda: hw.call_sync(name, action, _params(param), version=version))
    for entry in result.get("os", []):
        echo(f"[{entry['k']}] {entry['msg']}", err=True)
    _print_json(result["ret"])


@app.command(
    "encrypt",
    Arg("value", help="the secret value ('-' reads stdin)"),
    Arg("--action", help="bind the ciphertext to this action"),
)
def encrypt_cmd(value: str, action: str | None) -> None:
    """Encrypt a secret value for this project and environment."""
    if value == "-":
        value = sys.stdin.read().rstrip("\n")
    with _client() as hw:
        echo(_api(lambda: hw.encrypt(value, action=action)))


# ---------------------------------------------------------------------------------------------
# runs


@runs_app.command("list", Arg("--action", help="only this action"), STATUS, LIMIT, JSON)
def runs_list(action: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first."""
    with _client() as hw:
        page = _api(lambda: hw.list_runs(action=action, status=status, limit=limit))
    if as_json:
        _print_json(page)
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
    with _client() as hw:
        _print_json(_api(lambda: hw.get_run(run_id)))


@runs_app.command("logs", Arg("run_id"), Arg("--follow", "-f", kind=FLAG, help="follow until the run ends"))
def runs_logs(run_id: str, follow: bool) -> None:
    """Print a run's log."""
    with _client() as hw:
        if follow:
            _api(lambda: _print_all(hw.follow_logs(run_id)))
            return
        after = 0
        while True:
            page = _api(lambda after=after: hw.logs(run_id, after=after))
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
    with _client() as hw:
        run = _api(lambda: hw.cancel_run(run_id))
    echo(f"{run['id']} {run['status']}")


@runs_app.command("wait", Arg("run_id"), Arg("--timeout", type=float, default=3600.0, help="seconds"))
def runs_wait(run_id: str, timeout: float) -> None:
    """Wait for a run to end; exit 1 unless it succeeded."""
    with _client() as hw:
        final = _watch(hw, run_id, timeout)
    _summarise(final)
    if final["status"] != "SUCCESSFUL":
        raise SystemExit(1)


# ---------------------------------------------------------------------------------------------
# projects and tokens


@projects_app.command("create", Arg("name"), Arg("--id", dest="project_id", help="proj_..."))
def projects_create(name: str, project_id: str | None) -> None:
    """Create a project (needs the global admin token)."""
    with _client() as hw:
        _print_json(_api(lambda: hw.create_project(name, project_id)))


@tokens_app.command(
    "create",
    Arg("--scope", "-s", kind=REPEATED, required=True, help="a scope (repeatable)"),
    Arg("--environment", kind=REPEATED, help="restrict to (repeatable)"),
    Arg("--expires-in", type=int, help="seconds until it expires"),
    Arg("--name", help="a label"),
)
def tokens_create(scope: list[str], environment: list[str] | None, expires_in: int | None, name: str | None) -> None:
    """Create a project token; it is shown once."""
    with _client() as hw:
        _print_json(_api(lambda: hw.create_token(scope, environment or None, expires_in, name)))


@tokens_app.command("list")
def tokens_list() -> None:
    """List a project's tokens (never their values)."""
    with _client() as hw:
        _print_json(_api(lambda: hw.list_tokens()))


@tokens_app.command("revoke", Arg("token_id"))
def tokens_revoke(token_id: str) -> None:
    """Revoke a token; it stops working at once."""
    with _client() as hw:
        _api(lambda: hw.revoke_token(token_id))
    echo(f"revoked {token_id}")


# ---------------------------------------------------------------------------------------------
# the aws backend


@aws_app.command(
    "bootstrap",
    Arg("--table", envvar="HATCHWAY_TABLE_NAME", help="DynamoDB table"),
    Arg("--key", envvar="HATCHWAY_KMS_KEY_ID", help="KMS key alias (alias/...)"),
    Arg("--bucket", envvar="HATCHWAY_BUCKET", help="S3 bucket for outputs"),
    shares_options=False,
)
def aws_bootstrap(table: str | None, key: str | None, bucket: str | None) -> None:
    """Create the table, KMS key and bucket the aws backend needs, where AWS_ENDPOINT_URL points (idempotent)."""
    from hatchway.aws.setup import bootstrap
    from hatchway.errors import HatchwayError

    settings = _settings(backend="aws", table_name=table, kms_key_id=key, bucket=bucket)
    where = settings.aws_endpoint_url or f"AWS ({settings.aws_region or 'default region'})"
    try:
        made = bootstrap(settings)
    except HatchwayError as err:
        _fail(f"{err.message} at {where}")
    except Exception as err:  # botocore: no credentials, access denied, a bad endpoint
        _fail(f"cannot bootstrap at {where}: {type(err).__name__}: {err}")
    for line in made.created or ["everything existed already"]:
        echo(f"created {line}" if made.created else line, err=True)
    for name, value in made.environment().items():
        echo(f"export {name}={value}")


def main(argv: list[str] | None = None) -> None:
    """The ``hatchway`` console script (and ``python -m hatchway``)."""
    app.main(argv)


if __name__ == "__main__":
    main()
