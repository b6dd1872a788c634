"""Lambda entry point of the HTTP API (API Gateway HTTP API, payload v2): built once per container.

Logs are powertools JSON lines with the Lambda context and the API request id; with
``HATCHWAY_TRACING=xray`` the invocation is an X-Ray segment (powertools Tracer).
"""

from hatchway import wiring

handler = wiring.api_handler()
