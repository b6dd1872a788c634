"""Lambda entry point of the HTTP API (API Gateway HTTP API, payload v2).

The resolver and its collaborators are built once per container and reused by warm invocations.
Logs are powertools JSON lines with the Lambda context and the API request id; with
``HATCHWAY_TRACING=xray`` the invocation is an X-Ray segment (powertools Tracer).
"""

from __future__ import annotations

from aws_lambda_powertools.logging import correlation_paths

from hatchway.api import create_app
from hatchway.config import Settings
from hatchway.observability import configure_observability, lambda_handler
from hatchway.runner import LambdaDispatcher
from hatchway.wiring import build_gateway

settings = Settings.from_env()
configure_observability(settings)
gateway = build_gateway(settings)
if settings.bootstrap_token:
    gateway.set_bootstrap_token(settings.bootstrap_token)
# no worker pool here: runs of HTTP actions go to the runner function
gateway.dispatch = LambdaDispatcher.from_settings(settings)
app = create_app(gateway, settings.max_body_bytes)
handler = lambda_handler(app.resolve, correlation_paths.API_GATEWAY_HTTP)
