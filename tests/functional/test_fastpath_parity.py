"""The routes answered directly (hatchway.api.fastpath) answer exactly as powertools does."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from hatchway.api import create_app
from hatchway.api.app import Api
from hatchway.server import LambdaContext, http_event
from hatchway.services import Services
from tests.functional.actions import behave
from tests.functional.test_validation import REQUESTS, RUNS, SYNC, resolved
from tests.helpers import ADMIN_TOKEN

RUN = "/v1/projects/proj_local/runs/{run}"

#: requests of the direct routes beyond the validation suite's: reading runs, other tenants, odd headers
MORE: list[tuple[str, str, str, dict[str, str], bytes]] = [
    ("GET", RUN, "", {}, b""),
    ("GET", RUN, "", {"x-hatchway-environment": "production"}, b""),
    ("GET", RUN, "", {"x-hatchway-environment": "Not Valid!"}, b""),
    ("GET", RUN, "", {}, b'{"unexpected": "body"}'),
    ("GET", RUN, "wait=1", {}, b""),
    ("GET", "/v1/projects/proj_local/runs/run_doesnotexist", "", {}, b""),
    ("GET", "/v1/projects/proj_other/runs/run_doesnotexist", "", {}, b""),
    ("POST", "/v1/projects/proj_local/actions/nothere/runs", "", {}, b"{}"),
    ("POST", RUNS, "", {"idempotency-key": "same"}, b'{"parameters": {"behaviour": "ok"}}'),
    ("POST", RUNS, "", {"x-hatchway-environment": "production"}, b"{}"),
    ("POST", RUNS, "", {"authorization": "Bearer wrong"}, b"{}"),
    ("POST", RUNS, "", {}, b'{"parameters": {"behaviour": "ok"}, "version": 99}'),
    ("POST", SYNC, "", {}, b'{"parameters": {"behaviour": "user_error"}}'),
    ("POST", SYNC, "", {}, b'{"parameters": {"behaviour": "app_error"}}'),
    ("POST", SYNC.replace("check", "nope"), "", {}, b"{}"),
]


def answer(api: Api, method: str, path: str, query: str, extra: dict[str, str], body: bytes) -> dict[str, Any]:
    result = resolved(api, method, path, query, extra, body)
    if isinstance(result["body"], dict) and "exceptionId" in result["body"]:
        # an error of an action has ids of its own (the run, the exception), different in either path
        result["body"] = {k: re.sub(r"(exc|run)_[0-9A-Za-z]+", "<id>", v) if isinstance(v, str) else v
                          for k, v in result["body"].items()}  # fmt: skip
    return {**result, "headers": {k: ("<run>" if k == "Location" else v) for k, v in result["headers"].items()}}


@pytest.mark.parametrize(("method", "path", "query", "extra", "body"), REQUESTS + MORE)
def test_direct_routes_answer_like_powertools(
    services: Services, method: str, path: str, query: str, extra: dict[str, str], body: bytes
) -> None:
    # Given two APIs over one gateway, one without direct routes, and a run to read
    direct, general = create_app(services), create_app(services)
    general.direct.wanted = frozenset()
    admin = services.auth.authenticate(f"Bearer {ADMIN_TOKEN}")
    services.actions.register(admin, "proj_local", "development", behave())
    created = answer(general, "POST", RUNS, "", {}, b"{}")
    assert created["statusCode"] == 202
    run_id = json.loads(
        general.resolve(
            http_event(
                "GET", "/v1/projects/proj_local/runs", "", [(b"authorization", f"Bearer {ADMIN_TOKEN}".encode())], b""
            ),
            LambdaContext(),
        )["body"]
    )["items"][0]["id"]
    path = path.format(run=run_id)
    # When both answer the same request
    fast = answer(direct, method, path, query, extra, body)
    slow = answer(general, method, path, query, extra, body)
    # Then the answers are the same: status, headers, body (error details alike)
    assert fast == slow


def test_the_common_requests_take_the_direct_path(services: Services) -> None:
    # Given an API with an action registered
    api = create_app(services)
    services.actions.register(
        services.auth.authenticate(f"Bearer {ADMIN_TOKEN}"), "proj_local", "development", behave()
    )
    headers = [(b"authorization", f"Bearer {ADMIN_TOKEN}".encode()), (b"content-type", b"application/json")]
    # When a submission and a read of the run are answered directly
    submitted = api.direct.answer(http_event("POST", RUNS, "", headers, b'{"parameters": {"behaviour": "ok"}}'), None)
    assert submitted is not None and submitted["statusCode"] == 202
    run_id = json.loads(submitted["body"])["id"]
    read = api.direct.answer(http_event("GET", RUN.format(run=run_id), "", headers, b""), None)
    # Then both took the direct path and the run read back is the one submitted
    assert read is not None and read["statusCode"] == 200
    assert json.loads(read["body"])["id"] == run_id
    # and a request that fails validation is left to powertools
    assert api.direct.answer(http_event("POST", RUNS, "", headers, b'{"version": 0}'), None) is None


def test_without_the_powertools_internals_it_relies_on_every_request_takes_powertools_path(services: Services) -> None:
    from hatchway.api.fastpath import DirectRoutes

    # Given a resolver missing one of the internals (as a future powertools release might)
    class Changed:
        def __getattr__(self, name: str) -> object:
            if name == "_to_proxy_event":
                raise AttributeError(name)
            return getattr(create_app(services).resolver, name)

    direct = DirectRoutes(Changed(), services.telemetry)  # type: ignore[arg-type]
    headers = [(b"authorization", f"Bearer {ADMIN_TOKEN}".encode()), (b"content-type", b"application/json")]
    # Then nothing is answered directly
    assert direct.answer(http_event("POST", RUNS, "", headers, b'{"parameters": {}}'), None) is None
