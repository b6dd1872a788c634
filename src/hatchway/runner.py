"""The Lambda functions of a deployed stack that execute and settle runs: glue over the use cases.

* The **runner function** executes runs the gateway executes itself (HTTP actions) where no worker
  pool runs: the API function (and the sweeper) invoke it asynchronously with ``{"run_id": ..., "project_id": ...}``;
  the rules are :class:`hatchway.services.dispatched.DispatchedRuns`. An attempt may use the
  invocation's time up to a margin kept to record its end.
* The **events function** applies Batch and ECS state-change events (EventBridge) to their runs;
  the rules are :class:`hatchway.services.remote.RemoteRuns`.

Each handler is built once per container over the process's services
(:func:`hatchway.wiring.lambda_services`) and reused by warm invocations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hatchway.runtime.remote import container_identity
from hatchway.services import Services

#: the time left assumed when called without a Lambda context (tests, scripts)
NO_CONTEXT_SECONDS = 60.0


def lambda_handler(services: Services) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The runner function: execute the run named by the event, attempt after attempt while they fit."""
    owner = f"runner/{container_identity()}"

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        def seconds_left() -> float:
            return context.get_remaining_time_in_millis() / 1000 if context is not None else NO_CONTEXT_SECONDS

        run_id = str(event.get("run_id") or "")
        project_id = event.get("project_id")
        return services.dispatched.run_dispatched(
            run_id, seconds_left, owner, project_id=str(project_id) if project_id else None
        )

    return handle


def events_handler(services: Services) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The events function: apply one Batch or ECS state-change event; a summary for its log."""

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return services.remote.handle_event(event)

    return handle
