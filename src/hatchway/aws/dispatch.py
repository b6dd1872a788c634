"""Hands runs the gateway executes itself (HTTP actions) to the runner function of a deployed stack."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from hatchway.aws.clients import AwsClients, translate
from hatchway.domain.runs import Run

log = logging.getLogger("hatchway.runner")


class LambdaDispatcher:
    """The :class:`~hatchway.ports.RunDispatcher` of a stack without a worker pool: one asynchronous
    invoke (``InvocationType=Event``) of the runner function with the run's id. Lambda queues the
    event and retries a failed invocation, so the API answers 202 at once.

    A dispatch that fails is logged, not raised: the run is recorded, the client gets its 202, and
    the sweeper dispatches the run again within a minute. A run queued again for a retry is the
    runner's own to wait for (or the sweeper's), so :meth:`requeued` does nothing.
    """

    def __init__(self, function: str, aws: AwsClients) -> None:
        self.function = function
        self.aws = aws

    def created(self, run: Run) -> None:
        try:
            with translate("the runner function"):
                self.aws.client("lambda").invoke(
                    FunctionName=self.function,
                    InvocationType="Event",
                    Payload=json.dumps({"run_id": run.id, "project_id": run.project_id}).encode(),
                )
        except Exception:
            log.exception("could not dispatch a run; the sweeper will", extra={"run_id": run.id})

    def requeued(self, run: Run) -> None:
        """The runner that made the attempt waits for the retry, or the sweeper dispatches it."""


if TYPE_CHECKING:  # mypy checks that the adapter answers the port
    from hatchway import ports

    def _implements(dispatcher: LambdaDispatcher) -> ports.RunDispatcher:
        return dispatcher
