"""Lambda entry points: powertools Logger adds the Lambda context and the API request id to log lines."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from aws_lambda_powertools.logging import correlation_paths

from hatchway.observability import lambda_handler
from hatchway.observability.logs import configure_logging
from hatchway.server import LambdaContext, http_event


class Context(LambdaContext):
    function_name = "hatchway-api"
    memory_limit_in_mb = 512
    aws_request_id = "req-123"


def test_log_lines_of_an_invocation_carry_the_lambda_context_and_the_request_id() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    try:

        def handle(event: Any, context: Any) -> dict[str, int]:
            logging.getLogger("hatchway.api").info("handled")
            return {"ok": 1}

        handler = lambda_handler(handle, correlation_paths.API_GATEWAY_HTTP)
        event = http_event("GET", "/health", "", [], b"")
        assert handler(event, Context()) == {"ok": 1}
        assert handler(event, None) == {"ok": 1}  # no context (a test or a script): just handled
    finally:
        configure_logging("INFO")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["function_name"] == "hatchway-api" and first["function_request_id"] == "req-123"
    assert first["correlation_id"] == event["requestContext"]["requestId"]
    assert first["message"] == "handled" and "cold_start" in first
    assert second["message"] == "handled"
