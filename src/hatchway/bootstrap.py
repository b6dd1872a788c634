"""Start a gateway process: logging, wiring, the default project and token, examples, serving.

Used by ``hatchway serve`` and ``hatchway worker``; kept out of ``hatchway.cli`` so the CLI's help stays
cheap and so tests can start the same thing in-process.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from hatchway.config import Settings
from hatchway.domain.spec import resolve_local_paths
from hatchway.domain.tenants import Principal
from hatchway.errors import HatchwayError, ValidationFailed
from hatchway.observability import configure_observability
from hatchway.service import Gateway
from hatchway.wiring import build_gateway

log = logging.getLogger("hatchway")


def find_examples_dir() -> Path | None:
    """The repository's ``examples/`` (source checkout), else ``./examples``."""
    for candidate in (Path(__file__).resolve().parents[2] / "examples", Path.cwd() / "examples"):
        if candidate.is_dir():
            return candidate
    return None


def register_examples(gateway: Gateway, directory: Path) -> list[str]:
    """Register every ``*/action.json`` under ``directory`` in the default project."""
    admin = Principal(None, None, frozenset({"admin"}))
    loaded = []
    for path in sorted(directory.glob("*/action.json")):
        document = resolve_local_paths(json.loads(path.read_text()), path.parent)
        try:
            record, _ = gateway.register_action(admin, "proj_local", "development", document)
        except HatchwayError as err:
            log.warning("example not loaded", extra={"example": path.parent.name, "reason": err.message})
            continue
        loaded.append(f"{record.name}@{record.version}")
    return loaded


def start_gateway(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8080,
    load_examples: bool = False,
    examples_dir: Path | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """Serve the API with a worker pool until SIGINT/SIGTERM."""
    from hatchway.api import create_app
    from hatchway.server import AsgiGateway, ConnectionLimits, serve
    from hatchway.worker import WorkerPool

    configure_observability(settings)
    gateway = build_gateway(settings)
    refuse_unconfined(gateway)
    gateway.bootstrap()
    recovered = gateway.executors.recover()
    gateway.tidy_at_rest()
    if recovered:
        log.warning("stopped actions left running by a previous gateway", extra={"count": recovered})
    examples: list[str] = []
    if load_examples:
        directory = examples_dir or find_examples_dir()
        if directory is None:
            log.warning("no examples directory found; pass --examples-dir")
        else:
            examples = register_examples(gateway, directory)
    pool = WorkerPool(gateway) if settings.workers > 0 else None
    resolver = create_app(gateway, settings.max_body_bytes)
    app = AsgiGateway(
        resolver.resolve,
        settings.max_body_bytes,
        read_threads=settings.http_read_threads,
        body_timeout_seconds=settings.http_body_timeout_seconds,
        on_startup=pool.start if pool else None,
        on_shutdown=lambda: _shutdown(gateway, pool, settings.shutdown_grace_seconds),
    )
    limits = ConnectionLimits(
        settings.http_header_timeout_seconds, settings.http_max_connections, settings.http_max_header_bytes
    )
    scheme = "https" if tls_cert else "http"

    def ready() -> None:
        token_source = "HATCHWAY_BOOTSTRAP_TOKEN" if settings.bootstrap_token else str(settings.token_path)
        lines = [
            f"hatchway serving on {scheme}://{host}:{port} (docs: {scheme}://{host}:{port}/docs)",
            f"  home      {settings.home}",
            f"  backend   {settings.backend}; executor {gateway.executors.describe()}; workers {settings.workers}",
            f"  token     admin token in {token_source}",
            *confinement_lines(gateway),
        ]
        if settings.is_console_enabled:
            lines.append(f"  console   {scheme}://{host}:{port}/ui/")
        if examples:
            lines.append(f"  examples  {', '.join(examples)} in proj_local")
        # on stdout: stderr carries only the JSON log lines, for whatever collects them
        print("\n".join(lines), flush=True)

    try:
        serve(app, host, port, settings.log_level if settings.log_level == "DEBUG" else "warning",
              tls_cert, tls_key, settings.shutdown_grace_seconds + 5, on_ready=ready, limits=limits,
              keep_alive_seconds=settings.http_keep_alive_seconds,
              trusted_proxies=settings.trusted_proxies)  # fmt: skip
    finally:
        gateway.executors.close()
        gateway.store.close()


def refuse_unconfined(gateway: Gateway) -> None:
    """A gateway that would run host actions without any confinement does not start, unless told
    so (``HATCHWAY_SANDBOX=none``): an action could read the key file and the database."""
    for sandbox in gateway.executors.sandboxes():
        problem = sandbox.refusal()
        if problem:
            gateway.executors.close()
            gateway.store.close()
            raise ValidationFailed.at(["env", "HATCHWAY_SANDBOX"], problem)


def confinement_lines(gateway: Gateway) -> list[str]:
    """The banner's word on host actions: the sandbox level in force, and what an action can reach."""
    lines = []
    for sandbox in gateway.executors.sandboxes()[:1]:
        lines += [f"  sandbox   {sandbox.describe()}", f"            {sandbox.reach()}"]
    return lines


def _shutdown(gateway: Gateway, pool: Any, grace_seconds: float) -> None:
    """Stop the workers, then the executors (warm containers, reapers). uvicorn re-raises the
    SIGTERM it caught once the app has shut down, so code after ``serve`` may never run."""
    if pool is not None:
        pool.stop(grace_seconds)
    gateway.executors.close()


def run_worker(settings: Settings) -> None:
    """Run a worker pool on ``settings.home`` until SIGINT/SIGTERM."""
    from hatchway.worker import WorkerPool

    configure_observability(settings)
    gateway = build_gateway(settings)
    refuse_unconfined(gateway)
    gateway.executors.recover()
    gateway.tidy_at_rest()
    pool = WorkerPool(gateway)
    pool.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    lines = [f"hatchway worker on {settings.home}: {pool.size} threads, executor {gateway.executors.describe()}"]
    print("\n".join([*lines, *confinement_lines(gateway)]), flush=True)
    stop.wait()
    pool.stop(settings.shutdown_grace_seconds)
    gateway.executors.close()
    gateway.store.close()
