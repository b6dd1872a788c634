"""Request validation derived once per route answers exactly as powertools' general validation does."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware

from hatchway.api import create_app
from hatchway.api.app import Api
from hatchway.api.validation import CompiledRequestValidation
from hatchway.server import LambdaContext, http_event
from hatchway.services import Services
from tests.functional.actions import behave
from tests.helpers import ADMIN_TOKEN

RUNS = "/v1/projects/proj_local/actions/behave/runs"
SYNC = "/v1/projects/proj_local/actions/behave/sync/check"

#: (method, path, query, extra headers, body): valid and invalid requests of the routes with a fast path
REQUESTS: list[tuple[str, str, str, dict[str, str], bytes]] = [
    ("POST", RUNS, "", {}, b'{"parameters": {"behaviour": "ok"}}'),
    ("POST", RUNS, "", {}, b""),
    ("POST", RUNS, "", {}, b"null"),
    ("POST", RUNS, "", {}, b'{"parameters": '),
    ("POST", RUNS, "", {}, b'[{"parameters": {}}]'),
    ("POST", RUNS, "", {}, b"[]"),
    ("POST", RUNS, "", {}, b'"just a string"'),
    ("POST", RUNS, "", {}, b'{"parameters": {}, "unknown": 1}'),
    ("POST", RUNS, "", {}, b'{"parameters": [], "timeout_seconds": "soon"}'),
    ("POST", RUNS, "", {}, b'{"version": 0}'),
    ("POST", RUNS, "", {"idempotency-key": "k" * 300}, b"{}"),
    ("POST", RUNS, "", {"x-hatchway-environment": "Not Valid!"}, b"{}"),
    ("POST", RUNS, "", {"content-type": "text/plain"}, b"{}"),
    ("POST", "/v1/projects/proj_nope!/actions/behave/runs", "", {}, b"{}"),
    ("POST", RUNS, "debug=1", {}, b"{}"),
    ("POST", SYNC, "", {}, b'{"parameters": {"behaviour": "ok"}}'),
    ("POST", SYNC, "", {}, b'{"parameters": {"behaviour": 5}, "retries": -1}'),
    ("GET", "/v1/projects/proj_local/runs", "", {}, b""),
    ("GET", "/v1/projects/proj_local/runs", "limit=0", {}, b""),
    ("GET", "/v1/projects/proj_local/actions/behave", "version=x", {}, b""),
    ("POST", "/v1/projects/proj_local/encrypt", "", {}, b'{"value": 3}'),
    ("POST", "/v1/projects/proj_local/actions", "", {}, b'{"name": "Bad Name"}'),
]


def resolved(api: Api, method: str, path: str, query: str, extra: dict[str, str], body: bytes) -> dict[str, Any]:
    """The API's whole answer, its body parsed (only the keys of an accepted body: ids and times differ)."""
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json", **extra}
    event = http_event(method, path, query, [(k.encode(), v.encode()) for k, v in headers.items()], body)
    result = api.resolve(event, LambdaContext())
    data = json.loads(result["body"]) if result["body"] else None
    if result["statusCode"] < 300 and isinstance(data, dict):
        data = sorted(data)
    return {**result, "body": data}


def answer(api: Api, method: str, path: str, query: str, extra: dict[str, str], body: bytes) -> tuple[int, Any]:
    result = resolved(api, method, path, query, extra, body)
    return result["statusCode"], result["body"]


@pytest.mark.parametrize(("method", "path", "query", "extra", "body"), REQUESTS)
def test_compiled_validation_answers_like_powertools(
    services: Services, method: str, path: str, query: str, extra: dict[str, str], body: bytes
) -> None:
    # Given two APIs over one gateway: the default one, and one with powertools' general validation
    compiled, general = create_app(services), create_app(services)
    assert isinstance(compiled.resolver._request_validation_middleware, CompiledRequestValidation)
    general.resolver._request_validation_middleware = OpenAPIRequestValidationMiddleware()
    services.actions.register(
        services.auth.authenticate(f"Bearer {ADMIN_TOKEN}"), "proj_local", "development", behave()
    )
    # When both answer the same request
    fast = answer(compiled, method, path, query, extra, body)
    slow = answer(general, method, path, query, extra, body)
    # Then the answers are the same, status and error details alike
    assert fast == slow
