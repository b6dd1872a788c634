"""Lambda entry point of run state changes (EventBridge: "Batch Job State Change", "ECS Task State Change").

The gateway is built once per container and reused by warm invocations; the rules live in
:mod:`hatchway.remote`. Runs that end here are counted by the store's metrics observer (CloudWatch
embedded metrics on AWS); logs are powertools JSON lines with the Lambda context.
"""

from __future__ import annotations

from typing import Any

from hatchway.config import Settings
from hatchway.observability import configure_observability, lambda_handler
from hatchway.remote import handle_event
from hatchway.wiring import build_gateway

settings = Settings.from_env()
configure_observability(settings)
gateway = build_gateway(settings)


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle_event(gateway, event)


handler = lambda_handler(handle)
