"""Runs the gateway executes itself (HTTP actions) where no worker pool runs: the runner function on AWS.

``hatchway serve`` runs an HTTP action's async runs in its worker pool. A deployed stack has no
pool, so the API function hands each such run to the runner function once it is recorded (the
:class:`~hatchway.ports.RunDispatcher` wiring picks: an asynchronous Lambda invocation carrying
only the run id). The runner (:meth:`DispatchedRuns.run_dispatched`) claims the run (ENQUEUED ->
INPROGRESS, leased until its invocation's own deadline), executes the attempt - the same attempt a
worker makes, with the same log flushing, retries and callbacks - and watches the store for a
cancel meanwhile. When the attempt asks for another one soon enough, it waits and makes it too.

What the runner cannot finish, the sweeper picks up: an invocation that was lost or refused, a
retry due later than the runner waits, a runner killed mid-attempt (its lease ends, the lease
sweep queues the run again). Every way in is idempotent: the claim is a compare-and-set, so a run
dispatched twice is executed once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from hatchway.domain.runs import Run, RunStatus
from hatchway.errors import HatchwayError, TransitionConflict
from hatchway.ports import Clock, RunRepo
from hatchway.services.actions import ActionService
from hatchway.services.attempts import AttemptService

log = logging.getLogger("hatchway.runner")

#: a retry due within this many seconds is waited for by the runner that made the attempt
RUNNER_WAIT_SECONDS = 60.0
#: time kept aside after an attempt's own limit, to record its end before the invocation is killed
RECORD_MARGIN_SECONDS = 15.0
#: how often an attempt no worker heartbeats looks for a cancel in the store
WATCH_SECONDS = 2.0


class DispatchedRuns:
    """Attempts of runs handed to this process by id (the runner function, a Batch/ECS container)."""

    def __init__(self, runs: RunRepo, actions: ActionService, attempts: AttemptService, clock: Clock) -> None:
        self.runs = runs
        self.actions = actions
        self.attempts = attempts
        self.clock = clock

    def executes_itself(self, run: Run) -> bool:
        """True for a run the gateway executes itself (an HTTP action's), not a job, task or function."""
        try:
            resolved = self.actions.resolve(
                run.project_id, run.environment, run.action_name, run.action_version, include_deleted=True
            )
        except HatchwayError:
            return False
        return resolved.spec.http is not None

    def attempt_seconds(self, run: Run) -> float:
        """The longest one attempt of ``run`` may take: its limit, or its HTTP call's timeout if shorter."""
        limit = float(run.timeout_seconds or 0) or float("inf")
        try:
            spec = self.actions.resolve(
                run.project_id, run.environment, run.action_name, run.action_version, include_deleted=True
            ).spec
        except HatchwayError:
            return limit
        if spec.http is not None:
            limit = min(limit, spec.http.timeout_seconds)
        return limit

    def claim(self, run_id: str, owner: str, lease_until: int) -> Run | None:
        """Take a due ENQUEUED run for one attempt in this process; None if it is not there to take."""

        def is_due(run: Run) -> bool:
            return run.available_at <= self.clock.now_ms() and run.external_id is None

        for _ in range(10):
            run = self.runs.get_run(run_id)
            if run is None or run.status != RunStatus.ENQUEUED or not is_due(run):
                return None
            try:
                return self.runs.transition(
                    run_id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, is_due,
                    attempt=run.attempt + 1, started_at=run.started_at or self.clock.now_ms(), lease_owner=owner,
                    lease_until=lease_until, status_reason=None,
                )  # fmt: skip
            except TransitionConflict:
                continue
        return None

    def run_dispatched(
        self,
        run_id: str,
        seconds_left: Callable[[], float],
        owner: str,
        sleep: Callable[[float], Any] | None = None,
        project_id: str | None = None,
    ) -> dict[str, Any]:
        """Execute a dispatched run here (of ``project_id``, where the payload says), attempt after
        attempt while they fit in ``seconds_left()``.

        Returns a summary for the function's log. A run that is not (or no longer) this function's to
        execute - gone, ended, held by another runner, not an HTTP action - is left alone.
        """
        sleep = sleep or self.clock.sleep
        attempts = 0
        for _ in range(100):
            run = self.runs.get_run(run_id, project_id)
            if run is None:
                return {"run_id": run_id, "ignored": "no such run"}
            if run.status != RunStatus.ENQUEUED:
                return {"run_id": run_id, "status": run.status.value, "attempts": attempts}
            if not self.executes_itself(run):
                return {"run_id": run_id, "ignored": "not a run the gateway executes itself"}
            wait = max(0.0, (run.available_at - self.clock.now_ms()) / 1000)
            budget = seconds_left() - RECORD_MARGIN_SECONDS
            if wait > RUNNER_WAIT_SECONDS or wait + self.attempt_seconds(run) > budget:
                # the sweeper dispatches it again once it is due
                return {"run_id": run_id, "status": run.status.value, "attempts": attempts, "deferred": True}
            if wait > 0:
                sleep(wait)
            claimed = self.claim(run_id, owner, self.clock.now_ms() + int(seconds_left() * 1000))
            if claimed is None:
                continue  # another runner took it, or it was cancelled: look again
            attempts += 1
            final = self.execute_watched(claimed, threading.Event())
            if final.status != RunStatus.ENQUEUED:
                return {"run_id": run_id, "status": final.status.value, "attempts": attempts}
        return {"run_id": run_id, "status": "ENQUEUED", "attempts": attempts, "deferred": True}

    def execute_watched(self, run: Run, stop: threading.Event | None = None) -> Run:
        """Execute a claimed run that no worker heartbeats: the attempt stops on ``stop``, on a cancel
        through the API, or when another holder took the run (read from the store every few seconds)."""
        stop = stop or threading.Event()
        done = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(run, stop, done), name="hatchway-watch", daemon=True)
        watcher.start()
        try:
            return self.attempts.execute_claimed(run)
        finally:
            done.set()
            watcher.join(timeout=WATCH_SECONDS + 1)

    def _watch(self, run: Run, stop: threading.Event, done: threading.Event) -> None:
        """Stop the attempt on ``stop`` (SIGTERM), on a cancel through the API, or when another
        container took the run."""
        next_look = self.clock.monotonic() + WATCH_SECONDS
        while not done.wait(0.1):
            # repeated until the attempt ends: it may not have started listening yet
            if stop.is_set():
                self.attempts.cancel_local(run.id)
                continue
            if self.clock.monotonic() < next_look:
                continue
            next_look = self.clock.monotonic() + WATCH_SECONDS
            try:
                current = self.runs.get_run(run.id)
            except Exception:
                log.exception("cannot read the run; carrying on", extra={"run_id": run.id})
                continue
            if current is None or current.status == RunStatus.TERMINATING or current.lease_owner != run.lease_owner:
                stop.set()
