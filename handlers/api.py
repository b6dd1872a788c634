"""Lambda entry point of the HTTP API (API Gateway HTTP API, payload v2).

The resolver and its collaborators are built once per container and reused by warm invocations.
"""

from __future__ import annotations

from typing import Any

from hatchway.api import create_app
from hatchway.config import Settings
from hatchway.service import build_gateway

settings = Settings.from_env()
gateway = build_gateway(settings)
if settings.bootstrap_token:
    gateway.set_bootstrap_token(settings.bootstrap_token)
app = create_app(gateway, settings.max_body_bytes)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
