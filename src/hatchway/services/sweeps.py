"""What must be settled when nobody is watching: expired leases, undispatched runs, lost remote runs.

On AWS nothing runs between requests and events, so one scheduled function (every minute) calls
:meth:`Sweeper.sweep`:

* **expired leases** - a runner function killed mid-attempt stops holding its run; the lease sweep
  queues it again (or fails it once its lost attempts are used up), as it does for a local worker
  that died;
* **runs the gateway executes itself** (HTTP actions) that are due but held by nobody - a dispatch
  that was lost or refused, a retry later than a runner waits for, a run queued again by the lease
  sweep - are dispatched to the runner function again;
* **remote runs whose events never came** - Batch jobs and ECS tasks unfinished for longer than
  ``HATCHWAY_REMOTE_STALE_SECONDS`` are looked up and settled through the events' own path.

Each part is idempotent and bounded per pass, so a slow or repeated sweep is merely redundant. A
local worker pool sweeps leases itself, every few seconds (:meth:`Sweeper.sweep_leases`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from hatchway.config import RunSettings
from hatchway.domain.runs import SweepResult
from hatchway.ports import Clock, RunDispatcher, RunRepo
from hatchway.services.dispatched import DispatchedRuns
from hatchway.services.extras import Callbacks
from hatchway.services.remote import RemoteRuns

log = logging.getLogger("hatchway.sweeper")

#: a run due this recently may still be in the hands of its first dispatch
DISPATCH_GRACE_MS = 10_000
#: runs looked at per part and pass
PASS_LIMIT = 200


@dataclass
class SweepReport:
    """What one pass did (the function's answer, and its log line)."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)
    dispatched: list[str] = field(default_factory=list)
    remote_checked: int = 0
    remote_settled: list[str] = field(default_factory=list)
    failures: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Sweeper:
    """The sweeps; ``dispatcher`` hands due runs to the runner function (None: no runner here)."""

    def __init__(
        self,
        runs: RunRepo,
        dispatched: DispatchedRuns,
        dispatcher: RunDispatcher | None,
        remote: RemoteRuns,
        callbacks: Callbacks,
        settings: RunSettings,
        clock: Clock,
    ) -> None:
        self.runs = runs
        self.dispatched = dispatched
        self.dispatcher = dispatcher
        self.remote = remote
        self.callbacks = callbacks
        self.settings = settings
        self.clock = clock

    def sweep_leases(self) -> SweepResult:
        """A worker pool's lease sweep: runs of dead workers queued again or ended; ended ones get
        their callbacks."""
        swept = self.runs.sweep(self.settings.max_lost_attempts)
        for run_id in [*swept.failed, *swept.terminated]:
            ended = self.runs.get_run(run_id)
            if ended is not None:
                self.callbacks.after_terminal(ended)
        return swept

    def sweep(self, now: int | None = None) -> SweepReport:
        """One pass over leases, undispatched runs and stale remote runs."""
        report = SweepReport()
        settings = self.settings
        try:
            leases = self.runs.sweep(settings.max_lost_attempts, now, PASS_LIMIT)
            report.requeued, report.failed, report.terminated = leases.requeued, leases.failed, leases.terminated
        except Exception:
            log.exception("the lease sweep failed")
            report.failures += 1
        if self.dispatcher is not None:
            try:
                due = (now if now is not None else self.clock.now_ms()) - DISPATCH_GRACE_MS
                for run in self.runs.ready_runs(due, PASS_LIMIT):
                    if self.dispatched.executes_itself(run):
                        self.dispatcher.created(run)
                        report.dispatched.append(run.id)
            except Exception:
                log.exception("dispatching waiting runs failed")
                report.failures += 1
        try:
            remote = self.remote.sweep_remote(settings.remote_stale_seconds, now, PASS_LIMIT)
            report.remote_checked, report.remote_settled = remote.checked, remote.settled
            report.failures += remote.failures
        except NotImplementedError:
            pass  # a store that never hands runs to Batch or ECS
        except Exception:
            log.exception("the remote sweep failed")
            report.failures += 1
        if report.failures or report.requeued or report.failed or report.dispatched or report.remote_settled:
            log.info("sweep", extra={k: v for k, v in report.to_dict().items() if v})
        return report
