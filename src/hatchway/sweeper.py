"""The scheduled sweep of a deployed stack: what a worker pool's background threads do locally.

On AWS nothing runs between requests and events, so one scheduled function (``SweeperFunction``
in ``template.yaml``, every minute) settles what would otherwise stay unfinished forever:

* **expired leases** - a runner function killed mid-attempt stops holding its run; the store's
  lease sweep queues it again (or fails it once its lost attempts are used up), as it does for a
  local worker that died;
* **runs the gateway executes itself** (HTTP actions) that are due but held by nobody - a
  dispatch that was lost or refused, a retry later than a runner waits for, a run queued again by
  the lease sweep - are dispatched to the runner function again (:mod:`hatchway.runner`);
* **remote runs whose events never came** - Batch jobs and ECS tasks unfinished for longer than
  ``HATCHWAY_REMOTE_STALE_SECONDS`` are looked up and settled through the events' own path
  (:func:`hatchway.remote.sweep_remote`).

Each part is idempotent and bounded per pass, so a slow or repeated sweep is merely redundant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from hatchway.domain.runs import Run, now_ms

if TYPE_CHECKING:
    from hatchway.service import Gateway

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


def sweep(gateway: Gateway, dispatch: Callable[[Run], None] | None, now: int | None = None) -> SweepReport:
    """One pass over leases, undispatched runs and stale remote runs."""
    from hatchway.remote import sweep_remote
    from hatchway.runner import executes_itself

    report = SweepReport()
    settings = gateway.settings
    try:
        leases = gateway.store.sweep(settings.max_lost_attempts, now, PASS_LIMIT)
        report.requeued, report.failed, report.terminated = leases.requeued, leases.failed, leases.terminated
    except Exception:
        log.exception("the lease sweep failed")
        report.failures += 1
    if dispatch is not None:
        try:
            due = (now if now is not None else now_ms()) - DISPATCH_GRACE_MS
            for run in gateway.store.ready_runs(due, PASS_LIMIT):
                if executes_itself(gateway, run):
                    dispatch(run)
                    report.dispatched.append(run.id)
        except Exception:
            log.exception("dispatching waiting runs failed")
            report.failures += 1
    try:
        remote = sweep_remote(gateway, settings.remote_stale_seconds, now, PASS_LIMIT)
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
