"""The local worker pool: claims queued runs, keeps their leases, settles lost ones.

N worker threads claim runs from the store (ENQUEUED -> INPROGRESS with a lease) and run one
attempt each through :meth:`Gateway.execute_claimed`. One monitor thread renews the leases of the
runs in flight every ``heartbeat_seconds``, notices cancels (a run turned TERMINATING, perhaps by
another process) within a quarter second, stops an attempt whose lease was lost, and sweeps
expired leases of dead workers anywhere. A submit in the same process wakes an idle worker at
once; other processes are noticed by polling. On shutdown the pool stops claiming, lets running
attempts finish for a grace period, then releases the rest back to the queue.

The pool also advances pipeline executions (:mod:`hatchway.services.pipelines.advancer`): a worker that
finishes a step's run wakes the advancer, so the next step starts at once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from hatchway.domain.runs import Run, RunStatus
from hatchway.service import Gateway
from hatchway.services.pipelines.service import PipelineService

log = logging.getLogger("hatchway.worker")

CANCEL_CHECK_SECONDS = 0.25
IDLE_POLL_SECONDS = 0.2


@dataclass
class _InFlight:
    run: Run
    owner: str
    last_heartbeat: float


class WorkerPool:
    """Worker threads over one gateway."""

    def __init__(
        self,
        gateway: Gateway,
        size: int | None = None,
        lease_seconds: float | None = None,
        heartbeat_seconds: float | None = None,
        sweep_seconds: float | None = None,
        poll_seconds: float = IDLE_POLL_SECONDS,
    ) -> None:
        settings = gateway.settings
        self.gateway = gateway
        self.size = settings.workers if size is None else size
        self.lease_seconds = lease_seconds or settings.lease_seconds
        self.heartbeat_seconds = heartbeat_seconds or settings.heartbeat_seconds
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("the heartbeat interval must be shorter than the lease")
        self.sweep_seconds = sweep_seconds or max(0.2, min(self.lease_seconds / 2, 5.0))
        self.poll_seconds = poll_seconds
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._inflight: dict[str, _InFlight] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.completed = 0
        self.pipelines = PipelineService.of(gateway)

    # ---- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.gateway.on_enqueue = self.wake
        self.gateway.capacity = lambda: (self.size, self.busy)
        for index in range(self.size):
            owner = f"{self.gateway.node_id}/w{index}"
            thread = threading.Thread(target=self._work, args=(owner,), name=f"hatchway-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        monitor = threading.Thread(target=self._monitor, name="hatchway-monitor", daemon=True)
        monitor.start()
        self._threads.append(monitor)
        self.pipelines.start_advancer()

    def wake(self) -> None:
        with self._wake:
            self._wake.notify()

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._inflight)

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming; wait up to ``grace_seconds`` for running attempts, then release them."""
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + grace_seconds
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._lock:
            leftover = list(self._inflight)
        for run_id in leftover:
            log.info("releasing run at shutdown", extra={"run_id": run_id})
            self.gateway.cancel_local(run_id)
        for thread in self._threads:
            thread.join(timeout=max(1.0, self.gateway.settings.kill_grace_seconds + 2))
        self._threads.clear()
        self.pipelines.stop_advancer()

    # ---- threads ---------------------------------------------------------------------------

    def _work(self, owner: str) -> None:
        store = self.gateway.store
        while not self._stopping.is_set():
            try:
                run = store.claim(owner, self.lease_seconds)
            except Exception:
                log.exception("claim failed; retrying")
                self._stopping.wait(1.0)
                continue
            if run is None:
                with self._wake:
                    if not self._stopping.is_set():
                        self._wake.wait(self.poll_seconds)
                continue
            with self._lock:
                self._inflight[run.id] = _InFlight(run, owner, time.monotonic())
            self.gateway.crash_points.reach("after_claim", run.id)
            try:
                self.gateway.execute_claimed(run)
            except Exception:
                # the lease will expire and the sweeper will settle the run; never lose the thread
                log.exception("attempt failed inside the gateway", extra={"run_id": run.id})
            finally:
                with self._lock:
                    self._inflight.pop(run.id, None)
                self.completed += 1
                self.pipelines.notice(run)

    def _monitor(self) -> None:
        store = self.gateway.store
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
                    swept = store.sweep(self.gateway.settings.max_lost_attempts)
                except Exception:
                    log.exception("sweep failed")
                    continue
                if swept.requeued:
                    self.wake()
                for run_id in [*swept.failed, *swept.terminated]:
                    ended = store.get_run(run_id)
                    if ended is not None:
                        self.gateway.after_terminal(ended)

    def _check(self, item: _InFlight, now: float) -> None:
        store = self.gateway.store
        run_id = item.run.id
        if now - item.last_heartbeat >= self.heartbeat_seconds:
            status = store.heartbeat(run_id, item.owner, self.lease_seconds)
            item.last_heartbeat = now
            if status is None:
                log.warning("lease lost; stopping the attempt", extra={"run_id": run_id})
                self.gateway.cancel_local(run_id)
                return
        else:
            current = store.get_run(run_id)
            status = current.status if current else None
        if status == RunStatus.TERMINATING:
            self.gateway.cancel_local(run_id)


__all__ = ["WorkerPool"]
