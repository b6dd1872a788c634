"""The container side of a Batch or ECS attempt: ``python -m hatchway.runtime.adapter --run RUN_ID``.

Inside the container :func:`container_main` builds the services on the aws backend with a process
executor and runs one attempt of the run: it claims the run (ENQUEUED -> INPROGRESS, attempt + 1,
held by this job or task), waits out a retry interval, decrypts the ``#`` parameters with KMS under
the task role, runs the action's command under the contract, and records result, exports and logs
in the store (and a copy of the record and the full log in the outputs bucket). Its exit code tells
the engine what happened: 0 success, :data:`~hatchway.domain.runs.RETRY_EXIT_CODE` another attempt
is wanted, 1 the run ended otherwise (never retried). SIGTERM (a cancel, a spot reclaim) stops the
action's process tree. The events and the sweep of these runs are
:class:`hatchway.services.remote.RemoteRuns`.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from typing import Any

from hatchway import wiring
from hatchway.config import Settings, container_identity
from hatchway.domain.runs import RETRY_EXIT_CODE, Run, RunError, RunStatus, now_ms
from hatchway.errors import TransitionConflict
from hatchway.services import Services

log = logging.getLogger("hatchway.remote")

#: the longest a container waits for a retry interval before giving the attempt up to the engine
MAX_WAIT_SECONDS = 900.0


def claim_for_attempt(services: Services, run_id: str, owner: str) -> Run | None:
    """Take the run for this container's attempt; None if there is nothing to run."""
    store = services.repos.runs
    for _ in range(20):
        run = store.get_run(run_id)
        if run is None or run.is_terminal:
            return None
        now = now_ms()
        changes: dict[str, Any] = {
            "attempt": run.attempt + 1,
            "started_at": run.started_at or now,
            "lease_owner": owner,
            "lease_until": None,  # the engine watches the container; the local sweeper does not
            "status_reason": None,
        }
        try:
            if run.status == RunStatus.TERMINATING:
                store.transition(
                    run_id, RunStatus.TERMINATING, RunStatus.TERMINATED, finished_at=now, status_reason="cancelled",
                    error=RunError("cancelled", "the run was cancelled"),
                )  # fmt: skip
                return None
            if run.status == RunStatus.ENQUEUED:
                return store.transition(run_id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, **changes)
            if run.lease_owner == owner:
                return run
            if run.lease_owner is not None:
                # the previous attempt's container died without recording its end
                changes["lost_attempts"] = run.lost_attempts + 1
            return store.update_run(run_id, RunStatus.INPROGRESS, **changes)
        except TransitionConflict:
            continue
    return None


def run_attempt(services: Services, run_id: str, owner: str | None = None, stop: threading.Event | None = None) -> int:
    """One attempt of a remote run in this container; the exit code for the engine."""
    owner = owner or container_identity()
    stop = stop or threading.Event()
    run = claim_for_attempt(services, run_id, owner)
    if run is None:
        current = services.repos.runs.get_run(run_id)
        log.info("nothing to run", extra={"run_id": run_id, "status": current.status.value if current else None})
        return 0 if current is not None and current.status == RunStatus.SUCCESSFUL else 1
    wait = min(MAX_WAIT_SECONDS, (run.available_at - now_ms()) / 1000)
    if wait > 0:
        stop.wait(wait)
    final = services.dispatched.execute_watched(run, stop)
    _save_outputs(services, final)
    log.info("attempt ended", extra={"run_id": run_id, "status": final.status.value, "attempt": final.attempt})
    if final.status == RunStatus.SUCCESSFUL:
        return 0
    return RETRY_EXIT_CODE if final.status == RunStatus.ENQUEUED else 1


def _save_outputs(services: Services, run: Run) -> None:
    """A copy of the run's record and its whole log in the outputs bucket (best effort)."""
    bucket = services.settings.outputs_bucket
    store: Any = services.repos.runs
    aws = getattr(store, "aws", None)
    if aws is None:
        return
    try:
        lines = []
        after = 0
        while True:
            page = store.read_logs(run.id, after, 500)
            lines += [json.dumps(entry.to_api(), ensure_ascii=False) for entry in page.items]
            if page.next is None:
                break
            after = int(page.next)
        prefix = f"runs/{run.id}/attempt-{run.attempt}/"
        s3 = aws.client("s3")
        s3.put_object(Bucket=bucket, Key=prefix + "run.json", Body=json.dumps(run.to_api()).encode())
        s3.put_object(Bucket=bucket, Key=prefix + "logs.jsonl", Body=("\n".join(lines) + "\n").encode())
    except Exception:
        log.exception("could not copy the run's outputs to S3", extra={"run_id": run.id})


def container_services(settings: Settings, **clients: Any) -> Services:
    """The services a container attempt uses: the aws backend's store and key, a process executor."""
    process = wiring.build_executor(settings, "process")
    return wiring.build_services(settings, placement=wiring.build_placement(settings, sync=process), **clients)


def container_main(run_id: str) -> int:
    """``python -m hatchway.runtime.adapter --run RUN_ID`` inside a Batch job or ECS task."""
    settings = Settings.from_env(executor="process")
    wiring.configure_observability(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    services = container_services(settings)
    try:
        return run_attempt(services, run_id, stop=stop)
    finally:
        services.close()
