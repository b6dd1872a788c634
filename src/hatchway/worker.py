"""The local worker pool: claims queued runs, keeps their leases, settles lost ones.

N worker threads claim runs from the store (ENQUEUED -> INPROGRESS with a lease) and run one attempt
each (:meth:`~hatchway.services.attempts.AttemptService.execute_claimed`). One monitor thread renews
the leases of the runs in flight every ``heartbeat_seconds``, notices cancels (a run turned
TERMINATING, perhaps by another process) within a quarter second, stops an attempt whose lease was
lost, and sweeps expired leases of dead workers anywhere. A submit in the same process wakes an idle
worker at once (the services' :class:`~hatchway.services.queue.LocalQueue`), and so does one in
another process on the same SQLite file (its :class:`~hatchway.store.sqlite.doorbell.Doorbell`); polling
every 0.2 s remains the fallback. On shutdown the pool stops claiming, lets running attempts finish for a grace
period, then releases the rest back to the queue.

The pool also advances pipeline executions on the local pipeline engine
(:mod:`hatchway.services.pipelines.local`): a worker that finishes a step's run wakes the advancer,
so the next step starts at once.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hatchway import wiring
from hatchway.config import Settings
from hatchway.domain.runs import Run, RunStatus
from hatchway.errors import HatchwayError, NotFound, ValidationFailed
from hatchway.services import Services

if TYPE_CHECKING:
    from http.server import ThreadingHTTPServer

log = logging.getLogger("hatchway.worker")

CANCEL_CHECK_SECONDS = 0.25
IDLE_POLL_SECONDS = 0.2


@dataclass
class _InFlight:
    run: Run
    owner: str
    last_heartbeat: float


class WorkerPool:
    """Worker threads over one process's services (built with ``pool=True``: their local queue)."""

    def __init__(
        self,
        services: Services,
        size: int | None = None,
        lease_seconds: float | None = None,
        heartbeat_seconds: float | None = None,
        sweep_seconds: float | None = None,
        poll_seconds: float = IDLE_POLL_SECONDS,
    ) -> None:
        if services.queue is None:
            raise ValueError("a worker pool needs services built with pool=True (their local queue)")
        settings = services.settings
        self.services = services
        self.queue = services.queue
        self.size = settings.runs.workers if size is None else size
        self.lease_seconds = lease_seconds or settings.runs.lease_seconds
        self.heartbeat_seconds = heartbeat_seconds or settings.runs.heartbeat_seconds
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("the heartbeat interval must be shorter than the lease")
        self.sweep_seconds = sweep_seconds or max(0.2, min(self.lease_seconds / 2, 5.0))
        self.poll_seconds = poll_seconds
        self._stopping = threading.Event()
        self._inflight: dict[str, _InFlight] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.completed = 0
        #: the local pipeline engine, when it is this process's (Step Functions needs no advancer)
        self.pipelines = services.pipelines.local

    # ---- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.queue.attach(self.size, lambda: self.busy)
        for index in range(self.size):
            owner = f"{self.services.node_id}/w{index}"
            thread = threading.Thread(target=self._work, args=(owner,), name=f"hatchway-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        monitor = threading.Thread(target=self._monitor, name="hatchway-monitor", daemon=True)
        monitor.start()
        self._threads.append(monitor)
        if self.pipelines is not None:
            self.pipelines.start_advancer()

    def wake(self) -> None:
        self.queue.ring()

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._inflight)

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming; wait up to ``grace_seconds`` for running attempts, then release them."""
        self._stopping.set()
        self.queue.detach()
        self.queue.ring(everyone=True)
        deadline = time.monotonic() + grace_seconds
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._lock:
            leftover = list(self._inflight)
        for run_id in leftover:
            log.info("releasing run at shutdown", extra={"run_id": run_id})
            self.services.attempts.cancel_local(run_id)
        for thread in self._threads:
            thread.join(timeout=max(1.0, self.services.settings.runs.kill_grace_seconds + 2))
        self._threads.clear()
        if self.pipelines is not None:
            self.pipelines.stop_advancer()

    # ---- threads ---------------------------------------------------------------------------

    def _work(self, owner: str) -> None:
        runs = self.services.repos.runs
        while not self._stopping.is_set():
            try:
                claimed = runs.claim_known(owner, self.lease_seconds)
            except Exception:
                log.exception("claim failed; retrying")
                self._stopping.wait(1.0)
                continue
            if claimed is None:
                self.queue.wait(self.poll_seconds, self._stopping)
                continue
            run, revision = claimed
            with self._lock:
                self._inflight[run.id] = _InFlight(run, owner, time.monotonic())
            self.services.crash_points.reach("after_claim", run.id)
            try:
                self.services.attempts.execute_claimed(run, revision)
            except Exception:
                # the lease will expire and the sweeper will settle the run; never lose the thread
                log.exception("attempt failed inside the gateway", extra={"run_id": run.id})
            finally:
                with self._lock:
                    self._inflight.pop(run.id, None)
                self.completed += 1
                if self.pipelines is not None:
                    self.pipelines.notice(run)

    def _monitor(self) -> None:
        last_sweep = 0.0
        while not self._stopping.wait(CANCEL_CHECK_SECONDS):
            now = time.monotonic()
            with self._lock:
                inflight = list(self._inflight.values())
            for item in inflight:
                try:
                    self._check(item, now)
                except Exception:
                    log.exception("lease check failed", extra={"run_id": item.run.id})
            if now - last_sweep >= self.sweep_seconds:
                last_sweep = now
                try:
                    swept = self.services.sweeper.sweep_leases()
                except Exception:
                    log.exception("sweep failed")
                    continue
                if swept.requeued:
                    self.wake()

    def _check(self, item: _InFlight, now: float) -> None:
        runs, attempts = self.services.repos.runs, self.services.attempts
        run_id = item.run.id
        if now - item.last_heartbeat >= self.heartbeat_seconds:
            status = runs.heartbeat(run_id, item.owner, self.lease_seconds)
            item.last_heartbeat = now
            if status is None:
                log.warning("lease lost; stopping the attempt", extra={"run_id": run_id})
                attempts.cancel_local(run_id)
                return
        else:
            current = runs.get_run(run_id)
            status = current.status if current else None
        if status == RunStatus.TERMINATING:
            attempts.cancel_local(run_id)


# ---- starting a process that runs attempts --------------------------------------------------


def refuse_unconfined(services: Services) -> None:
    """A process that would run host actions without any confinement does not start, unless told
    so (``HATCHWAY_SANDBOX=none``): an action could read the key file and the database."""
    for sandbox in services.placement.sandboxes():
        problem = sandbox.refusal()
        if problem:
            services.close()
            raise ValidationFailed.at(["env", "HATCHWAY_SANDBOX"], problem)


def confinement_lines(services: Services) -> list[str]:
    """The banner's word on host actions: the sandbox level in force, and what an action can reach."""
    lines = []
    for sandbox in services.placement.sandboxes()[:1]:
        lines += [f"  sandbox   {sandbox.describe()}", f"            {sandbox.reach()}"]
    return lines


def run_worker(settings: Settings, metrics: tuple[str, int] | None = None) -> None:
    """``hatchway worker``: a worker pool on ``settings.home`` until SIGINT/SIGTERM; with ``metrics``
    (host, port), its ``GET /metrics`` there too."""
    wiring.configure_observability(settings)
    services = wiring.build_services(settings, pool=True)
    refuse_unconfined(services)
    wiring.tidy_at_rest(services)
    pool = WorkerPool(services)
    pool.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    lines = [f"hatchway worker on {settings.home}: {pool.size} threads, executor {services.placement.describe()}"]
    server = None
    if metrics is not None:
        wiring.bootstrap(services)  # the admin token (and the home's token file) that /metrics accepts
        server = serve_metrics(services, *metrics)
        lines.append(f"metrics at http://{metrics[0]}:{server.server_port}/metrics (an admin token)")
    print("\n".join([*lines, *confinement_lines(services)]), flush=True)
    stop.wait()
    if server is not None:
        server.shutdown()
        server.server_close()
    pool.stop(settings.runs.shutdown_grace_seconds)
    services.close()


def serve_metrics(services: Services, host: str, port: int) -> ThreadingHTTPServer:
    """``GET /metrics`` of a worker that serves no API, on a port of its own (a thread of its own).

    What the worker records - the ends of the runs it executes, their durations, queue waits, its
    worker threads - is not on the ``/metrics`` of ``hatchway serve``: Prometheus scrapes both. The
    page and its rules are the API's (an admin token; a project's admin token sees its project's
    series), and so is every error's shape; anything but ``GET /metrics`` is a 404.
    """
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from hatchway.api.common import SAFE_HEADERS
    from hatchway.api.errors import error_answer, unexpected_answer
    from hatchway.api.routers.observe import PROMETHEUS

    class Metrics(BaseHTTPRequestHandler):
        server_version = "hatchway-worker"
        sys_version = ""
        timeout = 10  # seconds a connection may take to send its request: a slow one holds no thread long

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            try:
                if self.path.partition("?")[0] != "/metrics":
                    raise NotFound("a worker answers GET /metrics only")
                principal = services.auth.authenticate(self.headers.get("Authorization"))
                self._answer(200, PROMETHEUS, services.stats.metrics_text(principal).encode(), {})
            except HatchwayError as exc:
                self._error(*error_answer(exc))
            except Exception as exc:
                self._error(*unexpected_answer(exc))

        do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815 - all 404 but GET /metrics

        def _error(self, code: int, body: dict[str, object], headers: dict[str, str]) -> None:
            self._answer(code, "application/json", json.dumps(body).encode(), headers)

        def _answer(self, code: int, kind: str, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(code)
            fields = {"Content-Type": kind, "Content-Length": str(len(body)), **SAFE_HEADERS, **headers}
            for name, value in fields.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
            pass  # a scrape every few seconds is not worth a log line

    server = ThreadingHTTPServer((host, port), Metrics)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="hatchway-worker-metrics", daemon=True).start()
    return server


__all__ = ["WorkerPool", "confinement_lines", "refuse_unconfined", "run_worker", "serve_metrics"]
