"""The package's side of a Batch or ECS container's attempt: :class:`ContainerAttempts`, the
:class:`~hatchway.runtime.remote.AttemptHost` that :mod:`hatchway.runtime.remote` drives.

Built by :func:`hatchway.wiring.container_host` over the aws backend's store and key with a process
executor. The events and the sweep of these runs are :class:`hatchway.services.remote.RemoteRuns`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hatchway.domain.runs import Run, RunError, RunStatus
from hatchway.errors import TransitionConflict
from hatchway.ports import BlobStore, Clock, RunRepo
from hatchway.runtime.remote import Claimed
from hatchway.services.dispatched import DispatchedRuns

log = logging.getLogger("hatchway.remote")


class ContainerAttempts:
    """Claims, executes and records one attempt of a stored run inside its job's or task's container.

    ``copies``: where a copy of the record and the whole log goes (``runs/<project>/<id>/attempt-<n>/``
    in the outputs bucket), None to keep none; ``on_close`` releases what the host was built on.
    The run is read with its project (the job's or task's ``HATCHWAY_RUN_PROJECT``): on DynamoDB
    its key starts with it, and the container's task role reaches no other key.
    """

    def __init__(
        self,
        runs: RunRepo,
        dispatched: DispatchedRuns,
        clock: Clock,
        copies: BlobStore | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.runs = runs
        self.dispatched = dispatched
        self.clock = clock
        self.copies = copies
        self.on_close = on_close
        self._held: dict[str, Run] = {}
        self._projects: dict[str, str] = {}

    def _get(self, run_id: str) -> Run | None:
        return self.runs.get_run(run_id, self._projects.get(run_id))

    def claim(self, run_id: str, owner: str, project_id: str | None = None) -> Claimed | None:
        """Take the run (of ``project_id``, if known) for this container's attempt; None if there
        is nothing to run."""
        if project_id is not None:
            self._projects[run_id] = project_id
        run = self._take(run_id, owner)
        if run is None:
            return None
        self._held[run_id] = run
        return Claimed(run.attempt, run.available_at)

    def _take(self, run_id: str, owner: str) -> Run | None:
        store = self.runs
        for _ in range(20):
            run = self._get(run_id)
            if run is None or run.is_terminal:
                return None
            now = self.clock.now_ms()
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
                        run_id, RunStatus.TERMINATING, RunStatus.TERMINATED, finished_at=now,
                        status_reason="cancelled", error=RunError("cancelled", "the run was cancelled"),
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

    def status(self, run_id: str) -> str | None:
        run = self._get(run_id)
        return run.status.value if run is not None else None

    def execute(self, run_id: str, stop: threading.Event) -> str:
        """Run the claimed attempt to its end: it stops on ``stop``, a cancel, or another holder."""
        run = self._held.get(run_id) or self._get(run_id)
        if run is None:
            return "gone"
        final = self.dispatched.execute_watched(run, stop)
        self._held[run_id] = final
        return final.status.value

    def save_outputs(self, run_id: str) -> None:
        """A copy of the run's record and its whole log in the outputs bucket (best effort)."""
        run = self._held.get(run_id)
        if self.copies is None or run is None:
            return
        try:
            lines = []
            after = 0
            while True:
                page = self.runs.read_logs(run.id, after, 500)
                lines += [json.dumps(entry.to_api(), ensure_ascii=False) for entry in page.items]
                if page.next is None:
                    break
                after = int(page.next)
            prefix = f"runs/{run.project_id}/{run.id}/attempt-{run.attempt}/"
            self.copies.put_bytes(prefix + "run.json", json.dumps(run.to_api()).encode())
            self.copies.put_bytes(prefix + "logs.jsonl", ("\n".join(lines) + "\n").encode())
        except Exception:
            log.exception("could not copy the run's outputs to S3", extra={"run_id": run.id})

    def close(self) -> None:
        if self.on_close is not None:
            self.on_close()


if TYPE_CHECKING:  # mypy checks that the host answers the container side's seam
    from hatchway.runtime.remote import AttemptHost

    def _implements(host: ContainerAttempts) -> AttemptHost:
        return host
