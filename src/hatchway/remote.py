"""Runs on remote engines (AWS Batch, ECS): the container side of an attempt, and state-change events.

*Inside the container* the runtime adapter's ``--run RUN_ID`` entry (:func:`container_main`) builds
a gateway on the aws backend with a process executor and runs one attempt of the run: it claims
the run (ENQUEUED -> INPROGRESS, attempt + 1, held by this job or task), waits out a retry
interval, decrypts the ``#`` parameters with KMS under the task role, runs the action's command
under the contract, and records result, exports and logs in the store (and a copy of the record
and the full log in the outputs bucket). Its exit code tells the engine what happened: 0 success,
:data:`~hatchway.aws.engines.RETRY_EXIT_CODE` another attempt is wanted, 1 the run ended
otherwise (never retried). SIGTERM (a cancel, a spot reclaim) stops the action's process tree.

*In the events function* :func:`handle_event` applies "Batch Job State Change" and "ECS Task State
Change" events with the store's transition rules. Events are idempotent and may arrive out of
order or late: an event about another job or task than the run's current one is ignored, a
terminal run is left alone, RUNNING only moves a run nobody has claimed yet, and an end settles
only what the adapter could not record itself (it never started, it was killed, it was cancelled).
After an ECS attempt that asked for a retry, the next task is started here.

*In the sweeper* :func:`sweep_remote` settles runs whose events never came (EventBridge gave up,
a rule was missing for a while): every run a job or task has held for longer than a bound is
looked up with ``DescribeJobs`` / ``DescribeTasks``, whose answers carry the same detail as the
events, and applied through the same :func:`apply_state_change`. A job or task the engine no
longer knows ended without telling: the run fails (or, on ECS, gets its next attempt).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from hatchway.aws.engines import RETRY_EXIT_CODE, RemoteExecutor, owner_engine
from hatchway.config import Settings, container_identity
from hatchway.domain.runs import Run, RunError, RunStatus, StateChange, now_ms
from hatchway.errors import Conflict, NotFound, TransitionConflict, new_exception_id

if TYPE_CHECKING:
    from hatchway.service import Gateway

log = logging.getLogger("hatchway.remote")

#: how often the container looks for a cancel in the store (SIGTERM is the fast path)
WATCH_SECONDS = 2.0
#: the longest a container waits for a retry interval before giving the attempt up to the engine
MAX_WAIT_SECONDS = 900.0


# ---------------------------------------------------------------------------------------------
# state-change events


def parse_event(event: dict[str, Any]) -> StateChange | None:
    """The state change an EventBridge event describes, if it is one hatchway handles."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return None
    kind = (event.get("source"), event.get("detail-type"))
    if kind == ("aws.batch", "Batch Job State Change"):
        from hatchway.aws.batch import state_change as batch_change

        return batch_change(detail)
    if kind == ("aws.ecs", "ECS Task State Change"):
        from hatchway.aws.ecs import state_change as ecs_change

        return ecs_change(detail)
    return None


def handle_event(gateway: Gateway, event: dict[str, Any]) -> dict[str, Any]:
    """Apply one EventBridge event; a summary for the function's log."""
    change = parse_event(event)
    if change is None:
        return {"ignored": "not a state change of a hatchway run"}
    run = apply_state_change(gateway, change)
    if run is None:
        return {"ignored": f"{change.run_id} is not run by {change.external_id}", "run_id": change.run_id}
    return {"run_id": run.id, "status": run.status.value}


def apply_state_change(gateway: Gateway, change: StateChange) -> Run | None:
    """Move a run as ``change`` says, by the transition rules; None if the change is not about its
    current job or task. Applying the same change twice, or an older one later, changes nothing."""
    store = gateway.store
    for _ in range(20):
        run = store.get_run(change.run_id)
        if run is None or run.external_id != change.external_id:
            return None
        if run.is_terminal:
            return run
        try:
            return _apply(gateway, run, change)
        except TransitionConflict:
            continue  # the adapter or another event moved it meanwhile: look again
    raise Conflict(f"run {change.run_id} is changing too fast to apply a state change")


def _apply(gateway: Gateway, run: Run, change: StateChange) -> Run:
    store = gateway.store
    now = now_ms()
    if change.phase == "running":
        is_new_attempt = change.attempt is None or change.attempt > run.attempt
        if run.status == RunStatus.ENQUEUED and run.lease_owner is None and is_new_attempt:
            return store.transition(
                run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS,
                started_at=run.started_at or now, status_reason="the container started",
            )  # fmt: skip
        return run
    if run.status == RunStatus.TERMINATING:
        return store.transition(
            run.id, RunStatus.TERMINATING, RunStatus.TERMINATED, finished_at=now, status_reason="cancelled",
            lease_owner=None, error=RunError("cancelled", "the run was cancelled"),
        )  # fmt: skip
    if change.phase == "succeeded" or (change.phase == "stopped" and change.exit_code == 0):
        if run.status == RunStatus.ENQUEUED:
            run = store.transition(
                run.id, RunStatus.ENQUEUED, RunStatus.INPROGRESS, attempt=max(1, run.attempt),
                started_at=run.started_at or now,
            )  # fmt: skip
        return store.transition(
            run.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, finished_at=now, lease_owner=None,
            status_reason=f"the {change.engine} job succeeded without recording a result",
        )  # fmt: skip
    if change.phase == "stopped" and _wants_another_task(run, change):
        return _next_task(gateway, run, change)
    error = _remote_error(change)
    log.error(
        "remote run failed",
        extra={"run_id": run.id, "exceptionId": error.exception_id, "reason": change.reason, "exit": change.exit_code},
    )
    return store.transition(
        run.id, run.status, RunStatus.FAILED, finished_at=now, lease_owner=None, error=error,
        status_reason="the run ended without recording a result",
    )  # fmt: skip


def _wants_another_task(run: Run, change: StateChange) -> bool:
    """An ECS attempt ended and another one is due: the adapter asked for it, or the adapter had
    claimed the run (so the attempt is counted) and its container died with attempts left. A task
    that died before its adapter claimed the run (a broken image) ends the run instead of looping."""
    if run.status == RunStatus.ENQUEUED:
        return change.exit_code == RETRY_EXIT_CODE
    own_attempts = run.attempt - run.lost_attempts
    return run.lease_owner is not None and change.exit_code != 1 and own_attempts < run.max_attempts


def _next_task(gateway: Gateway, run: Run, change: StateChange) -> Run:
    store = gateway.store
    if run.status == RunStatus.INPROGRESS:
        run = store.transition(
            run.id, RunStatus.INPROGRESS, RunStatus.ENQUEUED, lease_owner=None, available_at=now_ms(),
            status_reason=f"attempt {run.attempt} ended without a result ({_short(change.reason)}); retrying",
        )  # fmt: skip
    try:
        resolved = gateway.resolve(
            run.project_id, run.environment, run.action_name, run.action_version, include_deleted=True
        )
    except NotFound as exc:
        return store.transition(
            run.id, RunStatus.ENQUEUED, RunStatus.FAILED, finished_at=now_ms(),
            error=RunError("platform", exc.message), status_reason="the action version is gone",
        )  # fmt: skip
    executor = gateway.executors.run
    task = executor.submit(run, resolved.spec)
    try:
        return store.update_run(run.id, RunStatus.ENQUEUED, external_id=task)
    except TransitionConflict:
        executor.terminate(replace(run, external_id=task), "the run moved on")
        raise


# ---------------------------------------------------------------------------------------------
# runs whose events never came


@dataclass
class RemoteSweep:
    """What one pass of :func:`sweep_remote` found: runs looked up, and those it moved."""

    checked: int = 0
    settled: list[str] = field(default_factory=list)
    failures: int = 0


def sweep_remote(
    gateway: Gateway, stale_seconds: float, now: int | None = None, limit: int = 500, pages: int = 10
) -> RemoteSweep:
    """Ask Batch and ECS about every run they have held for more than ``stale_seconds`` (by its
    creation) and apply what they say, as if the events had come.

    Runs are read oldest first, ``limit`` at a time, up to ``pages`` pages: jobs that legitimately
    run (or wait in Batch's queue) for hours are looked up every pass, and must not hide the
    newer runs behind them.
    """
    now = now if now is not None else now_ms()
    result = RemoteSweep()
    after: str | None = None
    for _ in range(pages):
        runs = gateway.store.remote_runs(now - int(stale_seconds * 1000), limit, after)
        result.checked += len(runs)
        _settle(gateway, runs, result)
        if len(runs) < limit:
            break
        after = runs[-1].id
    return result


def _settle(gateway: Gateway, runs: list[Run], result: RemoteSweep) -> None:
    """Look up one page of remote runs, by engine, and apply what each engine says."""
    engines: dict[str, list[Run]] = {}
    for run in runs:
        if run.external_id is not None:
            engines.setdefault(owner_engine(run.external_id), []).append(run)
    for engine, held in engines.items():
        try:
            executor = _remote_executor(gateway, engine)
            known = executor.describe([run.external_id for run in held if run.external_id])
        except Exception:
            log.exception("cannot ask the engine about its runs", extra={"engine": engine})
            result.failures += len(held)
            continue
        for run in held:
            assert run.external_id is not None  # noqa: S101 - grouped above
            change = known[run.external_id] if run.external_id in known else executor.lost(run.id, run.external_id)
            if change is None:
                continue  # still queued: its events will come
            try:
                applied = apply_state_change(gateway, change)
            except Exception:
                log.exception("cannot settle a remote run", extra={"run_id": run.id})
                result.failures += 1
                continue
            if applied is not None and (applied.status, applied.external_id) != (run.status, run.external_id):
                log.warning(
                    "settled a remote run whose events never came",
                    extra={"run_id": run.id, "engine": engine, "status": applied.status.value, "phase": change.phase},
                )
                result.settled.append(run.id)


def _remote_executor(gateway: Gateway, engine: str) -> RemoteExecutor:
    """The gateway's own executor for ``engine``, or one made from its settings (the deployment
    may have moved from Batch to ECS with runs still held by the other)."""
    from hatchway.wiring import build_executor

    executor = gateway.executors.run
    if executor.name != engine:
        executor = build_executor(gateway.settings, engine)
    if not isinstance(executor, RemoteExecutor):  # pragma: no cover - the registry maps both names
        raise TypeError(f"{engine} is not a remote executor")
    return executor


def _remote_error(change: StateChange) -> RunError:
    reason = _short(change.reason)
    exception_id = new_exception_id()
    if "timeout" in reason.lower():
        return RunError("timeout", "the run did not finish within its time limit", exception_id, 504)
    if change.exit_code is not None and change.exit_code not in (0, 1, RETRY_EXIT_CODE):
        return RunError(
            "application", f"the container exited with code {change.exit_code} ({reason})", exception_id, 500
        )
    return RunError("platform", f"the {change.engine} engine could not run the container ({reason})", exception_id, 500)


def _short(text: str | None) -> str:
    return (text or "no reason given").strip()[:300]


# ---------------------------------------------------------------------------------------------
# the container side


def claim_for_attempt(gateway: Gateway, run_id: str, owner: str) -> Run | None:
    """Take the run for this container's attempt; None if there is nothing to run."""
    store = gateway.store
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


def run_attempt(gateway: Gateway, run_id: str, owner: str | None = None, stop: threading.Event | None = None) -> int:
    """One attempt of a remote run in this container; the exit code for the engine."""
    owner = owner or container_identity()
    stop = stop or threading.Event()
    run = claim_for_attempt(gateway, run_id, owner)
    if run is None:
        current = gateway.store.get_run(run_id)
        log.info("nothing to run", extra={"run_id": run_id, "status": current.status.value if current else None})
        return 0 if current is not None and current.status == RunStatus.SUCCESSFUL else 1
    wait = min(MAX_WAIT_SECONDS, (run.available_at - now_ms()) / 1000)
    if wait > 0:
        stop.wait(wait)
    final = execute_watched(gateway, run, stop)
    _save_outputs(gateway, final)
    log.info("attempt ended", extra={"run_id": run_id, "status": final.status.value, "attempt": final.attempt})
    if final.status == RunStatus.SUCCESSFUL:
        return 0
    return RETRY_EXIT_CODE if final.status == RunStatus.ENQUEUED else 1


def execute_watched(gateway: Gateway, run: Run, stop: threading.Event | None = None) -> Run:
    """Execute a claimed run that no worker heartbeats: the attempt stops on ``stop``, on a cancel
    through the API, or when another holder took the run (read from the store every few seconds)."""
    stop = stop or threading.Event()
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(gateway, run, stop, done), name="hatchway-watch", daemon=True)
    watcher.start()
    try:
        return gateway.execute_claimed(run)
    finally:
        done.set()
        watcher.join(timeout=WATCH_SECONDS + 1)


def _watch(gateway: Gateway, run: Run, stop: threading.Event, done: threading.Event) -> None:
    """Stop the attempt on SIGTERM, on a cancel through the API, or when another container took the run."""
    next_look = time.monotonic() + WATCH_SECONDS
    while not done.wait(0.1):
        # repeated until the attempt ends: it may not have started listening yet
        if stop.is_set():
            gateway.cancel_local(run.id)
            continue
        if time.monotonic() < next_look:
            continue
        next_look = time.monotonic() + WATCH_SECONDS
        try:
            current = gateway.store.get_run(run.id)
        except Exception:
            log.exception("cannot read the run; carrying on", extra={"run_id": run.id})
            continue
        if current is None or current.status == RunStatus.TERMINATING or current.lease_owner != run.lease_owner:
            stop.set()


def _save_outputs(gateway: Gateway, run: Run) -> None:
    """A copy of the run's record and its whole log in the outputs bucket (best effort)."""
    bucket = gateway.settings.outputs_bucket
    store: Any = gateway.store
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
        s3.put_object(Bucket=bucket, Key=prefix + "run.json", Body=json.dumps(gateway.present_run(run)).encode())
        s3.put_object(Bucket=bucket, Key=prefix + "logs.jsonl", Body=("\n".join(lines) + "\n").encode())
    except Exception:
        log.exception("could not copy the run's outputs to S3", extra={"run_id": run.id})


def container_gateway(settings: Settings) -> Gateway:
    """The gateway a container attempt uses: the aws backend's store and key, a process executor."""
    from hatchway.executors.process import ProcessExecutor
    from hatchway.services.placement import Placement
    from hatchway.wiring import build_gateway

    return build_gateway(settings, executors=Placement(ProcessExecutor.from_settings(settings)))


def container_main(run_id: str) -> int:
    """``python -m hatchway.runtime.adapter --run RUN_ID`` inside a Batch job or ECS task."""
    from hatchway.observability import configure_observability

    settings = Settings.from_env(executor="process")
    configure_observability(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    gateway = container_gateway(settings)
    try:
        return run_attempt(gateway, run_id, stop=stop)
    finally:
        gateway.executors.close()
        gateway.store.close()
