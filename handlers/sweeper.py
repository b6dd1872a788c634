"""Lambda entry point of the scheduled sweep (EventBridge schedule, every minute).

Expired leases, runs of HTTP actions nobody holds, Batch and ECS runs whose events never came:
the rules live in :mod:`hatchway.sweeper`. The gateway is built once per container.
"""

from __future__ import annotations

from typing import Any

from hatchway.config import Settings
from hatchway.observability import configure_observability, lambda_handler
from hatchway.runner import LambdaDispatcher
from hatchway.sweeper import sweep
from hatchway.wiring import build_gateway

settings = Settings.from_env()
configure_observability(settings)
gateway = build_gateway(settings)
dispatch = LambdaDispatcher.from_settings(settings)


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return sweep(gateway, dispatch).to_dict()


handler = lambda_handler(handle)
