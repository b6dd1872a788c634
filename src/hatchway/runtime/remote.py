"""The container side of a Batch or ECS attempt: ``python -m hatchway.runtime.adapter --run RUN_ID``.

The job's or task's container runs one attempt of a stored run: it claims the run (ENQUEUED ->
INPROGRESS, attempt + 1, held by this job or task), waits out a retry interval, runs the action
under the contract, records the outcome and leaves a copy of the record and the log in the outputs
bucket. Its exit code tells the engine what happened: 0 success, :data:`RETRY_EXIT_CODE` another
attempt is wanted, 1 the run ended otherwise (never retried). SIGTERM (a cancel, a spot reclaim)
stops the attempt.

This module drives the attempt over an :class:`AttemptHost`; the host reads the store and decrypts
with KMS, so it is the hatchway package's (``hatchway.wiring:container_host``, loaded by name:
images may carry ``runtime/`` alone). Without the package :func:`main` says so in one line.
Standard library only.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

#: the container exits with this when it put the run back in the queue for another attempt (EX_TEMPFAIL)
RETRY_EXIT_CODE = 75
#: how a job's or task's container starts this module (``--run RUN_ID`` follows)
ADAPTER_MODULE = ["python3", "-m", "hatchway.runtime.adapter"]
#: the longest a container waits for a retry interval before giving the attempt up to the engine
MAX_WAIT_SECONDS = 900.0
#: ``module:callable`` that makes the host (tests and other packagings may name another)
HOST_VARIABLE = "HATCHWAY_ATTEMPT_HOST"
#: the run's project, set on each job or task at submit: run keys start with it, and the task role
#: reaches only its own project's keys
PROJECT_VARIABLE = "HATCHWAY_RUN_PROJECT"
DEFAULT_HOST = "hatchway.wiring:container_host"
MISSING_PACKAGE = (
    "Batch/ECS attempts need the hatchway package with its aws extra in the image (pip install 'hatchway[aws]')"
)

log = logging.getLogger("hatchway.remote")


@dataclass(frozen=True)
class Claimed:
    """A run this container holds for one attempt: its number, and when it may start (ms)."""

    attempt: int
    available_at_ms: int


class AttemptHost(Protocol):
    """What the container side needs of the package: the store, the key, the executor."""

    # None: nothing to run; ``project_id``: the run's project, as the job or task names it
    def claim(self, run_id: str, owner: str, project_id: str | None = None) -> Claimed | None: ...

    def status(self, run_id: str) -> str | None: ...  # the run's status now (None: no such run)

    def execute(self, run_id: str, stop: threading.Event) -> str: ...  # the status it ended in

    def save_outputs(self, run_id: str) -> None: ...  # best effort

    def close(self) -> None: ...


def container_identity(env: Mapping[str, str] | None = None) -> str:
    """Who holds a run inside a Batch job or ECS task: the job and attempt, the task, or host and pid."""
    env = os.environ if env is None else env
    job = env.get("AWS_BATCH_JOB_ID")
    if job:
        return f"batch/{job}/{env.get('AWS_BATCH_JOB_ATTEMPT') or '1'}"
    metadata = env.get("ECS_CONTAINER_METADATA_URI_V4")
    if metadata:
        return "ecs/" + metadata.rstrip("/").rsplit("/", 1)[-1]
    return f"host/{os.uname().nodename}/{os.getpid()}"


def run_attempt(
    host: AttemptHost,
    run_id: str,
    owner: str | None = None,
    stop: threading.Event | None = None,
    project_id: str | None = None,
) -> int:
    """One attempt of a remote run (of ``project_id``, where the job or task says) in this
    container; the exit code for the engine."""
    owner = owner or container_identity()
    stop = stop or threading.Event()
    claimed = host.claim(run_id, owner, project_id)
    if claimed is None:
        status = host.status(run_id)
        log.info("nothing to run", extra={"run_id": run_id, "status": status})
        return 0 if status == "SUCCESSFUL" else 1
    wait = min(MAX_WAIT_SECONDS, (claimed.available_at_ms - time.time() * 1000) / 1000)
    if wait > 0:
        stop.wait(wait)
    status = host.execute(run_id, stop)
    host.save_outputs(run_id)
    log.info("attempt ended", extra={"run_id": run_id, "status": status, "attempt": claimed.attempt})
    if status == "SUCCESSFUL":
        return 0
    return RETRY_EXIT_CODE if status == "ENQUEUED" else 1


def load_host(target: str) -> Callable[[], AttemptHost]:
    """The host factory ``module:callable`` names (ImportError when its module is missing)."""
    module_name, _, name = target.partition(":")
    factory: Callable[[], AttemptHost] = getattr(importlib.import_module(module_name), name)
    return factory


def main(run_id: str, env: Mapping[str, str] | None = None) -> int:
    """``python -m hatchway.runtime.adapter --run RUN_ID`` inside a Batch job or ECS task."""
    env = os.environ if env is None else env
    try:
        host = load_host(env.get(HOST_VARIABLE) or DEFAULT_HOST)()
    except ImportError as exc:  # the base image alone: runtime/ without the package or its aws extra
        missing = f" ({exc.name} is missing)" if exc.name else ""
        print(MISSING_PACKAGE + missing, file=sys.stderr)
        return 1
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        return run_attempt(host, run_id, container_identity(env), stop, env.get(PROJECT_VARIABLE) or None)
    finally:
        host.close()
        signal.signal(signal.SIGTERM, previous)
