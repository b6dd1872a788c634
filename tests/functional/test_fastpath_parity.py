"""Requests answered by the fast path (hatchway.api.fastpath) answer exactly as powertools does.

The fast path reads private members of powertools (pinned exactly in pyproject.toml), so this runs
every route of the API - the frozen route table - with it on and off and compares the answers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from hatchway.api import create_app
from hatchway.api.app import Api
from hatchway.api.fastpath import qualifies
from hatchway.server import LambdaContext, http_event
from hatchway.services import Services
from hatchway.wiring import bootstrap, build_services
from tests.conftest import make_settings
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
    direct, general = create_app(services), create_app(services, fastpath=False)
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


# ---- every route -----------------------------------------------------------------------------

SNAPSHOT = Path(__file__).parent / "snapshots" / "routes.txt"


def frozen_routes() -> list[tuple[str, str]]:
    """(method, path) of every route in the frozen route table (raw routes as paths with <names>)."""
    routes = []
    for line in SNAPSHOT.read_text().splitlines()[1:]:
        kind, method, path = line.split(" ", 2)
        if kind == "raw":
            path = re.sub(r"\(\?P<(\w+)>[^()]*\)", r"<\1>", path).strip("^$")
        routes.append((method, path))
    return routes


#: a valid body of each route that takes one (the others are sent none)
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/oauth/token"): {"client_id": "tok_nope", "client_secret": "wrong"},
    ("POST", "/v1/projects"): {"name": "another"},
    ("POST", "/v1/projects/<project_id>/actions/<name>/action/<sync_action>"): {
        "configData": {"parameters": {"behaviour": "ok"}}
    },
    ("POST", "/v1/connect/<project_id>/actions/run"): {
        "id": "behave",
        "external_user_id": "u1",
        "configured_props": {"behaviour": "ok"},
    },  # fmt: skip
    ("POST", "/v1/ductape/actions/run"): {
        "env": "development",
        "product": "proj_local",
        "app": "behave",
        "event": "check",
        "input": {"body": {"behaviour": "ok"}},
    },  # fmt: skip
    ("PUT", "/v1/projects/<project>/files/<path>"): "some bytes",
    ("PUT", "/v1/projects/<project_id>/caches/<tag>"): {"ttl_seconds": 60},
    ("PUT", "/v1/projects/<project_id>/sessions/<tag>"): {"algorithm": "HS256", "secret": "s" * 32},
    ("PUT", "/v1/projects/<project_id>/pipelines/<name>"): {
        "steps": [{"name": "first", "action": "behave", "parameters": {"behaviour": "ok"}}]
    },
    ("POST", "/v1/projects/<project_id>/pipelines/<name>/executions"): {},
    ("POST", "/v1/projects/<project_id>/tokens"): {"scopes": ["runs:read"]},
    ("POST", "/v1/projects/<project_id>/encrypt"): {"value": "a secret"},
    ("POST", "/v1/projects/<project_id>/actions"): behave("other"),
    ("POST", "/v1/projects/<project_id>/actions/<name>/runs"): {"parameters": {"behaviour": "ok"}},
    ("POST", "/v1/projects/<project_id>/actions/<name>/sync/<sync_action>"): {"parameters": {"behaviour": "ok"}},
}

#: what is sent to each route besides its valid body: odd bodies, another environment, a bad one
VARIANTS: list[tuple[dict[str, str], bytes | None]] = [
    ({}, None),
    ({}, b"{}"),
    ({}, b'{"unexpected": 1}'),
    ({}, b"[]"),
    ({"x-hatchway-environment": "production"}, None),
    ({"x-hatchway-environment": "Not Valid!"}, None),
]
#: ids this API makes, different in every gateway: masked before answers are compared
IDS = re.compile(r"\b(exc|run|pex|tok)_[0-9A-Za-z]+")


class World:
    """A gateway of its own (SQLite home, services, API) with one of everything the routes read."""

    def __init__(self, home: Path, fastpath: bool) -> None:
        self.services = build_services(make_settings(home))
        bootstrap(self.services)
        self.api = create_app(self.services, fastpath=fastpath)
        self.fast: set[tuple[str, str]] = set()  # (method, route) the fast path answered
        answer_directly = self.api.direct.answer

        def spy(event: dict[str, Any], context: Any) -> dict[str, Any] | None:
            answered = answer_directly(event, context)
            if answered is not None:
                self.fast.add((event["requestContext"]["http"]["method"], event["rawPath"]))
            return answered

        self.api.direct.answer = spy  # type: ignore[method-assign]
        project = "/v1/projects/proj_local"
        self.call("POST", f"{project}/actions", behave())
        self.ids = {
            "run_id": self.call("POST", f"{project}/actions/behave/runs", {"parameters": {"behaviour": "ok"}})["id"],
            "token_id": self.call("POST", f"{project}/tokens", {"scopes": ["runs:read"]})["id"],
        }
        self.call("PUT", f"{project}/caches/tag1", {"ttl_seconds": 60})
        self.call("PUT", f"{project}/sessions/tag1", {"algorithm": "HS256", "secret": "s" * 32})
        self.call("PUT", f"{project}/files/a/b.txt", "some bytes")
        self.call("PUT", f"{project}/pipelines/pipe", BODIES[("PUT", "/v1/projects/<project_id>/pipelines/<name>")])
        self.ids["execution_id"] = self.call("POST", f"{project}/pipelines/pipe/executions", {})["id"]
        self.fast.clear()

    def call(self, method: str, path: str, body: Any) -> Any:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        result = self.api.resolve(event(method, path, {}, data), LambdaContext())
        assert result["statusCode"] < 300, (method, path, result)
        return json.loads(result["body"]) if result["body"] else None

    def path(self, route: str) -> str:
        name = "pipe" if "/pipelines/" in route else "index.html" if route.startswith("/ui/") else "behave"
        values = {"project_id": "proj_local", "project": "proj_local", "name": name, "sync_action": "check",
                  "tag": "tag1", "step": "first", "path": "a/b.txt", "run": self.ids["run_id"], **self.ids}  # fmt: skip
        return re.sub(r"<(\w+)>", lambda m: values[m.group(1)], route)

    def close(self) -> None:
        self.services.close()


def event(method: str, path: str, extra: dict[str, str], body: bytes) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json", **extra}
    return http_event(method, path, "", [(k.encode(), v.encode()) for k, v in headers.items()], body)


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """An answer with the ids of its gateway masked; of a success, only the keys of a JSON body."""
    text = IDS.sub(r"\1_<id>", result.get("body") or "")
    headers = {k: IDS.sub(r"\1_<id>", v) for k, v in (result.get("headers") or {}).items()}
    body: Any = text
    try:
        body = json.loads(text) if text else None
    except ValueError:
        if result["statusCode"] < 300:
            body = re.sub(r"\d+", "0", text)  # a text answer (metrics, docs): its figures may differ
    if result["statusCode"] < 300 and isinstance(body, dict):
        body = sorted(body)
    return {**result, "headers": headers, "body": body}


def assert_same_answers(first: World, second: World, method: str, route: str) -> None:
    """``first`` and ``second`` answer alike the route's valid request and each of :data:`VARIANTS`."""
    valid = BODIES.get((method, route))
    valid_bytes = b"" if valid is None else valid.encode() if isinstance(valid, str) else json.dumps(valid).encode()
    for extra, body in [({}, valid_bytes), *VARIANTS]:
        one = first.api.resolve(event(method, first.path(route), extra, body or b""), LambdaContext())
        other = second.api.resolve(event(method, second.path(route), extra, body or b""), LambdaContext())
        assert comparable(one) == comparable(other), (extra, body)


@pytest.mark.parametrize(("method", "route"), frozen_routes(), ids=[f"{m} {p}" for m, p in frozen_routes()])
def test_every_route_answers_the_same_with_the_fast_path_on_and_off(tmp_path: Path, method: str, route: str) -> None:
    # Given two gateways alike, one answering with the fast path and one through powertools alone
    fast, general = World(tmp_path / "fast", fastpath=True), World(tmp_path / "general", fastpath=False)
    try:
        # When both answer the same requests (each with the ids of its own gateway)
        # Then status, headers and body are the same
        assert_same_answers(fast, general, method, route)
        # and the fast path answered this route unless it must not (raw bytes, an answer without a type)
        assert not general.fast
        live = [r for r in (*fast.api.resolver._static_routes, *fast.api.resolver._dynamic_routes)
                if r.method == method and r.path == route]  # fmt: skip
        assert bool(fast.fast) == bool(live and qualifies(live[0])), (fast.fast, route)
    finally:
        fast.close()
        general.close()


def test_the_parity_table_is_the_live_route_table(services: Services) -> None:
    # Given the API as it is built
    api = create_app(services)
    live = [(r.method, re.sub(r"\(\?P<(\w+)>[^()]*\)", r"<\1>", r.pattern.pattern).strip("^$")) for r in api.raw]
    live += [(r.method, r.path) for r in (*api.resolver._static_routes, *api.resolver._dynamic_routes)]
    # Then the parity test above runs every one of its routes
    assert live == frozen_routes()
