"""Runs the gateway executes itself (HTTP actions) where no worker pool runs: the runner function on AWS.

``hatchway serve`` runs an HTTP action's async runs in its worker pool. A deployed stack has no
pool, so the API function hands each such run to the runner function once it is recorded: an
asynchronous Lambda invocation (``InvocationType=Event``) carrying only the run id
(:class:`LambdaDispatcher`, the gateway's :attr:`~hatchway.service.Gateway.dispatch` hook). Lambda
queues the event and retries a failed invocation, so the API answers 202 at once. The runner
(:func:`run_dispatched`) claims the run (ENQUEUED -> INPROGRESS, leased until its invocation's own
deadline), executes the attempt through :meth:`~hatchway.service.Gateway.execute_claimed` - the
same attempt a worker makes, with the same log flushing, retries and callbacks - and watches the
store for a cancel meanwhile. When the attempt asks for another one soon enough, it waits and
makes it too.

What the runner cannot finish, the sweeper (:mod:`hatchway.sweeper`) picks up: an invocation that
was lost or refused, a retry due later than the runner waits, a runner killed mid-attempt (its
lease ends, the lease sweep queues the run again). Every way in is idempotent: the claim is a
compare-and-set, so a run dispatched twice is executed once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hatchway.domain.runs import Run, RunStatus, now_ms
from hatchway.errors import HatchwayError, TransitionConflict

if TYPE_CHECKING:
    from hatchway.aws.clients import AwsClients
    from hatchway.config import Settings
    from hatchway.service import Gateway

log = logging.getLogger("hatchway.runner")

#: a retry due within this many seconds is waited for by the runner that made the attempt
RUNNER_WAIT_SECONDS = 60.0
#: time kept aside after an attempt's own limit, to record its end before the invocation is killed
RECORD_MARGIN_SECONDS = 15.0


def executes_itself(gateway: Gateway, run: Run) -> bool:
    """True for a run the gateway executes itself (an HTTP action's), not a job, task or function."""
    try:
        resolved = gateway.resolve(
            run.project_id, run.environment, run.action_name, run.action_version, include_deleted=True
        )
    except HatchwayError:
        return False
    return resolved.spec.http is not None


def attempt_seconds(gateway: Gateway, run: Run) -> float:
    """The longest one attempt of ``run`` may take: its limit, or its HTTP call's timeout if shorter."""
    limit = float(run.timeout_seconds or 0) or float("inf")
    try:
        spec = gateway.resolve(
            run.project_id, run.environment, run.action_name, run.action_version, include_deleted=True
        ).spec
    except HatchwayError:
        return limit
    if spec.http is not None:
        limit = min(limit, spec.http.timeout_seconds)
    return limit


class LambdaDispatcher:
    """Hands a recorded run to the runner function: one asynchronous invoke with its id.

    A dispatch that fails is logged, not raised: the run is recorded, the client gets its 202, and
    the sweeper dispatches the run again within a minute.
    """

    def __init__(self, function: str, aws: AwsClients) -> None:
        self.function = function
        self.aws = aws

    @classmethod
    def from_settings(cls, settings: Settings, aws: AwsClients | None = None) -> LambdaDispatcher | None:
        """The dispatcher the settings name (``HATCHWAY_RUNNER_FUNCTION``), or None."""
        if not settings.runner_function:
            return None
        from hatchway.aws.clients import AwsClients

        return cls(settings.runner_function, aws or AwsClients.from_settings(settings))

    def __call__(self, run: Run) -> None:
        from hatchway.aws.clients import translate

        try:
            with translate("the runner function"):
                self.aws.client("lambda").invoke(
                    FunctionName=self.function,
                    InvocationType="Event",
                    Payload=json.dumps({"run_id": run.id}).encode(),
                )
        except Exception:
            log.exception("could not dispatch a run; the sweeper will", extra={"run_id": run.id})


def claim(gateway: Gateway, run_id: str, owner: str, lease_until: int) -> Run | None:
    """Take a due ENQUEUED run for one attempt in this process; None if it is not there to take."""

    def is_due(run: Run) -> bool:
        return run.available_at <= now_ms() and run.external_id is None

    for _ in range(10):
        run = gateway.store.get_run(run_id)
        if run is None or run.status != RunStatus.ENQUEUED or not is_due(run):
            return None
        try:
            return gateway.store.transition(
                run_id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, is_due,
                attempt=run.attempt + 1, started_at=run.started_at or now_ms(), lease_owner=owner,
                lease_until=lease_until, status_reason=None,
            )  # fmt: skip
        except TransitionConflict:
            continue
    return None


def run_dispatched(
    gateway: Gateway,
    run_id: str,
    seconds_left: Callable[[], float],
    owner: str,
    sleep: Callable[[float], Any] = time.sleep,
) -> dict[str, Any]:
    """Execute a dispatched run here, attempt after attempt while they fit in ``seconds_left()``.

    Returns a summary for the function's log. A run that is not (or no longer) this function's to
    execute - gone, ended, held by another runner, not an HTTP action - is left alone.
    """
    from hatchway.remote import execute_watched

    attempts = 0
    for _ in range(100):
        run = gateway.store.get_run(run_id)
        if run is None:
            return {"run_id": run_id, "ignored": "no such run"}
        if run.status != RunStatus.ENQUEUED:
            return {"run_id": run_id, "status": run.status.value, "attempts": attempts}
        if not executes_itself(gateway, run):
            return {"run_id": run_id, "ignored": "not a run the gateway executes itself"}
        wait = max(0.0, (run.available_at - now_ms()) / 1000)
        budget = seconds_left() - RECORD_MARGIN_SECONDS
        if wait > RUNNER_WAIT_SECONDS or wait + attempt_seconds(gateway, run) > budget:
            # the sweeper dispatches it again once it is due
            return {"run_id": run_id, "status": run.status.value, "attempts": attempts, "deferred": True}
        if wait > 0:
            sleep(wait)
        claimed = claim(gateway, run_id, owner, now_ms() + int(seconds_left() * 1000))
        if claimed is None:
            continue  # another runner took it, or it was cancelled: look again
        attempts += 1
        final = execute_watched(gateway, claimed, threading.Event())
        if final.status != RunStatus.ENQUEUED:
            return {"run_id": run_id, "status": final.status.value, "attempts": attempts}
    return {"run_id": run_id, "status": "ENQUEUED", "attempts": attempts, "deferred": True}
