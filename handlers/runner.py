"""Lambda entry point of the runner function: executes a run of an HTTP action, by id.

The API function (and the sweeper) invoke it asynchronously with ``{"run_id": "run_..."}``; the
rules live in :mod:`hatchway.runner`. The gateway is built once per container and reused by warm
invocations; an attempt may use the invocation's time up to a margin kept to record its end.
"""

from __future__ import annotations

from typing import Any

from hatchway.config import Settings, container_identity
from hatchway.observability import configure_observability, lambda_handler
from hatchway.runner import run_dispatched
from hatchway.wiring import build_gateway

settings = Settings.from_env()
configure_observability(settings)
gateway = build_gateway(settings)
owner = f"runner/{container_identity()}"


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    def seconds_left() -> float:
        return context.get_remaining_time_in_millis() / 1000 if context is not None else 60.0

    return run_dispatched(gateway, str(event.get("run_id") or ""), seconds_left, owner)


handler = lambda_handler(handle)
