"""The ``hatchway`` command line: serve the gateway, run workers, and talk to a gateway's API.

Heavy modules (the server, uvicorn, httpx, the service) are imported inside the commands that need
them, so ``hatchway --help`` stays quick. The server URL and token come from ``--url``/``--token``,
then ``HATCHWAY_URL``/``HATCHWAY_TOKEN``, then ``$HATCHWAY_HOME/token``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from hatchway.cli_pipelines import executions_app, pipelines_app

if TYPE_CHECKING:
    from hatchway.client import Client

# Plain help text: typer's rich help imports rich's markdown and syntax highlighting (markdown-it,
# pygments), which doubles the time `hatchway --help` takes; rich still prints tables and JSON.
app = typer.Typer(
    name="hatchway",
    help="hatchway: register container actions and run them over HTTPS.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
actions_app = typer.Typer(help="Register and inspect actions.", no_args_is_help=True, rich_markup_mode=None)
runs_app = typer.Typer(help="Inspect, follow and cancel runs.", no_args_is_help=True, rich_markup_mode=None)
projects_app = typer.Typer(help="Projects (global admin).", no_args_is_help=True, rich_markup_mode=None)
tokens_app = typer.Typer(help="Project tokens.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(actions_app, name="actions")
app.add_typer(runs_app, name="runs")
app.add_typer(projects_app, name="projects")
app.add_typer(tokens_app, name="tokens")
aws_app = typer.Typer(
    help="The aws backend's resources (AWS, or LocalStack / a moto server through AWS_ENDPOINT_URL).",
    no_args_is_help=True,
)
app.add_typer(aws_app, name="aws")
app.add_typer(pipelines_app, name="pipelines")
app.add_typer(executions_app, name="executions")

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="HATCHWAY_URL", help="gateway URL")]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar="HATCHWAY_TOKEN", help="bearer token", show_default=False)
]
ProjectOpt = Annotated[str, typer.Option("--project", envvar="HATCHWAY_PROJECT", help="project id")]
EnvOpt = Annotated[str | None, typer.Option("--env", envvar="HATCHWAY_ENVIRONMENT", help="environment")]
ParamOpt = Annotated[list[str] | None, typer.Option("--param", "-p", help="parameter as key=value (repeatable)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print raw JSON")]


class Conn:
    """Connection options shared by the API commands."""

    url: str | None = None
    token: str | None = None
    project: str = "proj_local"
    env: str | None = None


_conn = Conn()


@app.callback()
def _global(url: UrlOpt = None, token: TokenOpt = None, project: ProjectOpt = "proj_local", env: EnvOpt = None) -> None:
    _conn.url, _conn.token, _conn.project, _conn.env = url, token, project, env


def _client() -> Client:
    from hatchway.client import Client

    return Client(_conn.url, _conn.token, project=_conn.project, environment=_conn.env)


def _fail(message: str, code: int = 1) -> NoReturn:
    from rich.console import Console

    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _print_json(data: Any) -> None:
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


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8080,
    home: Annotated[Path | None, typer.Option(envvar="HATCHWAY_HOME", help="state directory")] = None,
    workers: Annotated[int | None, typer.Option(help="worker threads (0: API only)")] = None,
    executor: Annotated[str | None, typer.Option(help="process, docker or lambda-local")] = None,
    backend: Annotated[str | None, typer.Option(help="embedded or aws")] = None,
    examples: Annotated[bool, typer.Option("--examples/--no-examples", help="register the example actions")] = False,
    examples_dir: Annotated[Path | None, typer.Option(help="where the examples are")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM)")] = None,
    dev_cert: Annotated[
        bool, typer.Option("--dev-cert", help="HTTPS with a development certificate made under $HATCHWAY_HOME/tls")
    ] = False,
    log_level: Annotated[str | None, typer.Option(help="log level")] = None,
) -> None:
    """Serve the gateway (API + worker pool): SQLite and a key file, or DynamoDB and KMS with --backend aws."""
    from hatchway.bootstrap import start_gateway

    settings = _settings(home=home, workers=workers, executor=executor, backend=backend, log_level=log_level)
    if (tls_cert is None) != (tls_key is None):
        _fail("give both --tls-cert and --tls-key")
    if dev_cert:
        if tls_cert is not None:
            _fail("--dev-cert makes its own certificate; leave out --tls-cert/--tls-key")
        import socket

        from hatchway.tls import dev_certificate

        made = dev_certificate(settings.home / "tls", [host, socket.gethostname()])
        tls_cert, tls_key = made.cert, made.key
        typer.echo(f"HTTPS with a development certificate: trust {made.ca} (curl --cacert, SSL_CERT_FILE)")
    start_gateway(
        settings,
        host=host,
        port=port,
        load_examples=examples,
        examples_dir=examples_dir,
        tls_cert=str(tls_cert) if tls_cert else None,
        tls_key=str(tls_key) if tls_key else None,
    )


@app.command()
def worker(
    home: Annotated[Path | None, typer.Option(envvar="HATCHWAY_HOME", help="state directory")] = None,
    workers: Annotated[int | None, typer.Option(help="worker threads")] = None,
    executor: Annotated[str | None, typer.Option(help="process, docker or lambda-local")] = None,
) -> None:
    """Run a worker pool on a gateway's home without serving HTTP."""
    from hatchway.bootstrap import run_worker

    run_worker(_settings(home=home, workers=workers, executor=executor))


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="action name (lowercase, digits, '-')")],
    directory: Annotated[Path | None, typer.Option("--dir", help="where to create it (default ./NAME)")] = None,
) -> None:
    """Scaffold an action project: action.json, an entry script, a Dockerfile and a test."""
    from hatchway.scaffold import scaffold

    try:
        target = scaffold(name, directory or Path(name))
    except (ValueError, FileExistsError) as err:
        _fail(str(err))
    typer.echo(f"created {target}; register it with: hatchway actions create --from-file {target / 'action.json'}")


# ---------------------------------------------------------------------------------------------
# actions


@actions_app.command("create")
def actions_create(
    from_file: Annotated[Path, typer.Option("--from-file", "-f", exists=True, dir_okay=False, help="action.json")],
    as_json: JsonOpt = False,
) -> None:
    """Register a new version of an action from its action.json."""
    from hatchway.spec import resolve_local_paths

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
        typer.echo(f"{record['name']} version {record['version']} ({record['digest']})")


@actions_app.command("list")
def actions_list(
    tag: Annotated[str | None, typer.Option(help="only actions with this tag")] = None, as_json: JsonOpt = False
) -> None:
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


@actions_app.command("get")
def actions_get(
    name: str,
    version: Annotated[int | None, typer.Option(help="a version number")] = None,
    digest: Annotated[str | None, typer.Option(help="a digest")] = None,
) -> None:
    """Show an action version."""
    with _client() as hw:
        _print_json(_api(lambda: hw.get_action(name, version, digest)))


@actions_app.command("versions")
def actions_versions(name: str) -> None:
    """List an action's versions."""
    with _client() as hw:
        items = _api(lambda: hw.list_versions(name))
    for item in items:
        typer.echo(f"{item['version']:>4}  {item['digest']}  {item['created_at']}")


@actions_app.command("delete")
def actions_delete(name: str) -> None:
    """Delete an action (its runs stay readable)."""
    with _client() as hw:
        _api(lambda: hw.delete_action(name))
    typer.echo(f"deleted {name}")


# ---------------------------------------------------------------------------------------------
# running


@app.command("run")
def run_cmd(
    name: str,
    param: ParamOpt = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait for the end, with a live status line")] = False,
    version: Annotated[int | None, typer.Option(help="run this version")] = None,
    timeout: Annotated[int | None, typer.Option(help="timeout in seconds (only shortens the action's)")] = None,
    retries: Annotated[int | None, typer.Option(help="retries after application errors")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Idempotency-Key header")] = None,
    as_json: JsonOpt = False,
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
            _print_json(run) if as_json else typer.echo(run["id"])
            return
        final = _watch(hw, run["id"])
    if as_json:
        _print_json(final)
    else:
        _summarise(final)
    if final["status"] != "SUCCESSFUL":
        raise typer.Exit(1)


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
    typer.echo(f"{run['id']} {run['status']} in {run.get('duration_ms')} ms (attempt {run['attempt']})")
    if run.get("ret") is not None:
        typer.echo("ret: " + json.dumps(run["ret"]))
    if run.get("exports"):
        typer.echo("exports: " + json.dumps(run["exports"]))
    if run.get("error"):
        err = run["error"]
        typer.echo(
            f"error ({err['kind']}): {err['message']}"
            + (f" [exceptionId {err['exceptionId']}]" if err.get("exceptionId") else "")
        )


@app.command("sync")
def sync_cmd(
    name: str, action: str, param: ParamOpt = None, version: Annotated[int | None, typer.Option()] = None
) -> None:
    """Call a sync action and print its JSON answer."""
    with _client() as hw:
        result = _api(lambda: hw.call_sync(name, action, _params(param), version=version))
    for entry in result.get("os", []):
        typer.echo(f"[{entry['k']}] {entry['msg']}", err=True)
    _print_json(result["ret"])


@app.command("encrypt")
def encrypt_cmd(
    value: Annotated[str, typer.Argument(help="the secret value ('-' reads stdin)")],
    action: Annotated[str | None, typer.Option(help="bind the ciphertext to this action")] = None,
) -> None:
    """Encrypt a secret value for this project and environment."""
    if value == "-":
        value = sys.stdin.read().rstrip("\n")
    with _client() as hw:
        typer.echo(_api(lambda: hw.encrypt(value, action=action)))


# ---------------------------------------------------------------------------------------------
# runs


@runs_app.command("list")
def runs_list(
    action: Annotated[str | None, typer.Option(help="only this action")] = None,
    status: Annotated[str | None, typer.Option(help="only this status")] = None,
    limit: Annotated[int, typer.Option(help="how many")] = 20,
    as_json: JsonOpt = False,
) -> None:
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


@runs_app.command("get")
def runs_get(run_id: str) -> None:
    """Show a run."""
    with _client() as hw:
        _print_json(_api(lambda: hw.get_run(run_id)))


@runs_app.command("logs")
def runs_logs(
    run_id: str, follow: Annotated[bool, typer.Option("--follow", "-f", help="follow until the run ends")] = False
) -> None:
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
    typer.echo(f"{stamp} {entry['k']:<6} {entry['msg']}")


@runs_app.command("cancel")
def runs_cancel(run_id: str) -> None:
    """Cancel a run (queued: at once; running: its process tree is stopped)."""
    with _client() as hw:
        run = _api(lambda: hw.cancel_run(run_id))
    typer.echo(f"{run['id']} {run['status']}")


@runs_app.command("wait")
def runs_wait(run_id: str, timeout: Annotated[float, typer.Option(help="seconds")] = 3600.0) -> None:
    """Wait for a run to end; exit 1 unless it succeeded."""
    with _client() as hw:
        final = _watch(hw, run_id, timeout)
    _summarise(final)
    if final["status"] != "SUCCESSFUL":
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------
# projects and tokens


@projects_app.command("create")
def projects_create(name: str, project_id: Annotated[str | None, typer.Option("--id", help="proj_...")] = None) -> None:
    """Create a project (needs the global admin token)."""
    with _client() as hw:
        _print_json(_api(lambda: hw.create_project(name, project_id)))


@tokens_app.command("create")
def tokens_create(
    scope: Annotated[list[str], typer.Option("--scope", "-s", help="a scope (repeatable)")],
    environment: Annotated[list[str] | None, typer.Option("--environment", help="restrict to (repeatable)")] = None,
    expires_in: Annotated[int | None, typer.Option(help="seconds until it expires")] = None,
    name: Annotated[str | None, typer.Option(help="a label")] = None,
) -> None:
    """Create a project token; it is shown once."""
    with _client() as hw:
        _print_json(_api(lambda: hw.create_token(scope, environment or None, expires_in, name)))


@tokens_app.command("list")
def tokens_list() -> None:
    """List a project's tokens (never their values)."""
    with _client() as hw:
        _print_json(_api(lambda: hw.list_tokens()))


@tokens_app.command("revoke")
def tokens_revoke(token_id: str) -> None:
    """Revoke a token; it stops working at once."""
    with _client() as hw:
        _api(lambda: hw.revoke_token(token_id))
    typer.echo(f"revoked {token_id}")


# ---------------------------------------------------------------------------------------------
# the aws backend


@aws_app.command("bootstrap")
def aws_bootstrap(
    table: Annotated[str | None, typer.Option(envvar="HATCHWAY_TABLE_NAME", help="DynamoDB table")] = None,
    key: Annotated[str | None, typer.Option(envvar="HATCHWAY_KMS_KEY_ID", help="KMS key alias (alias/...)")] = None,
    bucket: Annotated[str | None, typer.Option(envvar="HATCHWAY_BUCKET", help="S3 bucket for outputs")] = None,
) -> None:
    """Create the table, KMS key and bucket the aws backend needs, where AWS_ENDPOINT_URL points (idempotent)."""
    from hatchway.aws_setup import bootstrap
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
        typer.echo(f"created {line}" if made.created else line, err=True)
    for name, value in made.environment().items():
        typer.echo(f"export {name}={value}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
