"""Issue 15, part 4: a token bound to environments stays inside them.

Against a real ``hatchway serve``: a production-only admin token may not list or revoke the
project's tokens, read or rotate its callback secret, or read its metrics (operations on the whole
project, 403 in the error shape), with or without ``X-Hatchway-Environment``; it keeps what its
environment gives it. An environment header that is not a name is a 422 on every route.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import ADMIN_TOKEN, LiveServer

P = "/v1/projects/proj_local"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("environments") / "home").start()
    yield live
    live.kill()


def client(server: LiveServer, token: str, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}", **headers}, timeout=30)


@pytest.fixture(scope="module")
def tokens(server: LiveServer) -> dict[str, dict[str, Any]]:
    with client(server, ADMIN_TOKEN) as admin:
        made = {
            "prod_admin": admin.post(f"{P}/tokens", json={"scopes": ["admin"], "environments": ["production"]}),
            "dev_reader": admin.post(f"{P}/tokens", json={"scopes": ["runs:read"], "environments": ["development"]}),
            "project_admin": admin.post(f"{P}/tokens", json={"scopes": ["admin"]}),
        }
    assert all(answer.status_code == 201 for answer in made.values())
    return {name: answer.json() for name, answer in made.items()}


def assert_forbidden(answer: httpx.Response) -> None:
    assert answer.status_code == 403, answer.text
    body = answer.json()
    assert body["status"] == "error" and body["error"] == "Forbidden" and body["code"] == 403, body


@pytest.mark.parametrize("environment", [None, "production"], ids=["no-header", "its-own-environment"])
def test_a_production_admin_cannot_touch_what_belongs_to_the_whole_project(
    server: LiveServer, tokens: dict[str, dict[str, Any]], environment: str | None
) -> None:
    headers = {"X-Hatchway-Environment": environment} if environment else {}
    with client(server, tokens["prod_admin"]["token"], **headers) as prod, client(server, ADMIN_TOKEN) as admin:
        secret = admin.get(f"{P}/callbacks/secret").json()["secret"]
        # When the production-only admin reaches for the project's tokens, callback secret, metrics
        assert_forbidden(prod.get(f"{P}/tokens"))
        assert_forbidden(prod.delete(f"{P}/tokens/{tokens['dev_reader']['id']}"))
        assert_forbidden(prod.get(f"{P}/callbacks/secret"))
        assert_forbidden(prod.post(f"{P}/callbacks/secret"))
        assert_forbidden(prod.get("/metrics"))
        assert_forbidden(prod.post(f"{P}/tokens", json={"scopes": ["runs:read"]}))  # a token for every environment
        assert_forbidden(prod.post(f"{P}/tokens", json={"scopes": ["runs:read"], "environments": ["development"]}))
        # Then nothing changed: the development token works, the secret is the same
        with client(server, tokens["dev_reader"]["token"]) as dev:
            assert dev.get(f"{P}/runs").status_code == 200
        assert admin.get(f"{P}/callbacks/secret").json()["secret"] == secret


def test_a_production_admin_keeps_what_production_gives_it(
    server: LiveServer, tokens: dict[str, dict[str, Any]]
) -> None:
    with client(server, tokens["prod_admin"]["token"], **{"X-Hatchway-Environment": "production"}) as prod:
        assert prod.get(f"{P}/actions").status_code == 200
        assert prod.get(f"{P}/runs").status_code == 200
        assert prod.get(P).status_code == 200  # its project's name (the console reads it at sign-in)
        made = prod.post(f"{P}/tokens", json={"scopes": ["runs:read"], "environments": ["production"]})
        assert made.status_code == 201 and made.json()["environments"] == ["production"]
    with client(server, tokens["prod_admin"]["token"]) as prod_in_development:
        assert_forbidden(prod_in_development.get(f"{P}/actions"))  # no header: development


def test_a_token_for_every_environment_manages_the_project(
    server: LiveServer, tokens: dict[str, dict[str, Any]]
) -> None:
    with client(server, tokens["project_admin"]["token"]) as owner:
        assert owner.get(f"{P}/tokens").status_code == 200
        assert owner.get(f"{P}/callbacks/secret").status_code == 200
        assert owner.get("/metrics").status_code == 200
        spare = owner.post(f"{P}/tokens", json={"scopes": ["runs:read"], "environments": ["development"]}).json()
        assert owner.delete(f"{P}/tokens/{spare['id']}").status_code == 204


def documented_routes(server: LiveServer) -> list[tuple[str, str]]:
    document = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    return [
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") != []
    ]


def fill(path: str) -> str:
    values = {"project_id": "proj_local", "run_id": "run_00000000000000000000000000", "token_id": "tok_x"}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)


@pytest.mark.parametrize("bad", ["DEV!", "Production", "a b", "x" * 64])
def test_an_environment_header_that_is_not_a_name_is_a_422_on_every_route(server: LiveServer, bad: str) -> None:
    routes = documented_routes(server)
    assert len(routes) >= 40
    with client(server, ADMIN_TOKEN) as admin:
        for method, path in routes:
            name = "x-pd-environment" if path.startswith("/v1/connect/") else "X-Hatchway-Environment"
            answer = admin.request(method, fill(path), headers={name: bad}, json={})
            assert answer.status_code == 422, (method, path, answer.status_code, answer.text[:200])
            body = answer.json()
            assert body["status"] == "error" and body["details"][0]["loc"] == ["header", name], body
