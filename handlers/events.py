"""Lambda entry point of run state changes (EventBridge: "Batch Job State Change", "ECS Task State Change").

The gateway is built once per container and reused by warm invocations; the rules live in
:mod:`hatchway.remote`.
"""

from __future__ import annotations

from typing import Any

from hatchway.config import Settings
from hatchway.remote import handle_event
from hatchway.service import build_gateway

settings = Settings.from_env()
gateway = build_gateway(settings)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle_event(gateway, event)
