"""``hatchway serve``, ``hatchway worker`` and ``hatchway init``: the commands that run on the gateway's
own machine (they take no gateway options after the command)."""

from __future__ import annotations

from hatchway.cli._common import EXECUTOR, HOME, app, fail, settings
from hatchway.cli._table import FLAG, NEGATABLE, Arg, echo, path

TYPE_CHECKING = False  # `import typing` costs ~4 ms of start-up; mypy treats this name as True
if TYPE_CHECKING:
    from pathlib import Path


@app.command(
    "serve",
    Arg("--host", default="127.0.0.1", help="address to bind"),
    Arg("--port", type=int, default=8080, help="port to bind"),
    HOME,
    Arg("--workers", type=int, help="worker threads (0: API only)"),
    Arg("--processes", type=int, help="processes serving the port, sharing the workers (default 1)"),
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
    processes: int | None,
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
    if processes is not None and processes < 1:
        fail("--processes must be at least 1")
    gateway_settings = settings(
        home=home, workers=workers, processes=processes, executor=executor, backend=backend, log_level=log_level
    )
    _check_port(host, port)
    if (tls_cert is None) != (tls_key is None):
        fail("give both --tls-cert and --tls-key")
    if dev_cert:
        if tls_cert is not None:
            fail("--dev-cert makes its own certificate; leave out --tls-cert/--tls-key")
        import socket

        from hatchway.cli.tls import dev_certificate

        made = dev_certificate(gateway_settings.home / "tls", [host, socket.gethostname()])
        tls_cert, tls_key = made.cert, made.key
        echo(f"HTTPS with a development certificate: trust {made.ca} (curl --cacert, SSL_CERT_FILE)")
    from hatchway.errors import ValidationFailed

    if gateway_settings.server.processes > 1:
        from hatchway.serve_group import run_group as run_server
    else:
        from hatchway.server import run_server
    try:
        run_server(
            gateway_settings,
            host=host,
            port=port,
            load_examples=examples,
            examples_dir=examples_dir,
            tls_cert=str(tls_cert) if tls_cert else None,
            tls_key=str(tls_key) if tls_key else None,
        )
    except ValidationFailed as err:  # the configuration cannot work here (the sandbox, say)
        fail(err.message)


def _check_port(host: str, port: int) -> None:
    """One error line if ``host:port`` cannot be bound (taken, or not an address of this machine),
    before anything starts: uvicorn would only log it as a JSON line and exit."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as err:
        fail(f"cannot serve on {host}: {err.strerror or err}")
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                fail(f"port {port} on {host} is already in use (another `hatchway serve`?); choose one with --port")
            fail(f"cannot listen on {host}:{port}: {err.strerror or err}")


@app.command(
    "worker",
    HOME,
    Arg("--workers", type=int, help="worker threads"),
    EXECUTOR,
    Arg("--metrics-port", type=int, help="serve GET /metrics (this worker's numbers) on this port"),
    Arg("--metrics-host", default="127.0.0.1", help="address of --metrics-port"),
    shares_options=False,
)
def worker(
    home: Path | None, workers: int | None, executor: str | None, metrics_port: int | None, metrics_host: str
) -> None:
    """Run a worker pool on a gateway's home without serving the API (only its metrics, if asked)."""
    from hatchway.errors import ValidationFailed
    from hatchway.worker import run_worker

    if metrics_port is not None:
        _check_port(metrics_host, metrics_port)
    try:
        run_worker(
            settings(home=home, workers=workers, executor=executor),
            metrics=(metrics_host, metrics_port) if metrics_port is not None else None,
        )
    except ValidationFailed as err:
        fail(err.message)


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
        fail(str(err))
    echo(f"created {target}; register it with: hatchway actions create --from-file {target / 'action.json'}")
    echo("action.json's timeout is in minutes (10 = ten minutes); `hatchway run --timeout` is in seconds")
