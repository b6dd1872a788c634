"""Tenancy: tokens, scopes, environments, and no object of one tenant reachable from another."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from hatchway.client import (
    Client,
    ForbiddenResponse,
    NotFoundResponse,
    UnauthorizedResponse,
    ValidationErrorResponse,
)
from hatchway.config import Settings
from hatchway.services import Services
from tests.conftest import inprocess_client, make_settings
from tests.functional.actions import behave

PUBLIC = {"/health", "/openapi.json", "/docs", "/v1/oauth/token"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # this module sends dozens of bad tokens from one address on purpose (every route, three ways):
    # the budget of failed authentications would cut it short (tests/security tests the budget)
    return make_settings(tmp_path / "home", auth_failure_budget=10_000)


@pytest.fixture
def admin(client: Client) -> Client:
    return client


def project_client(services: Services, admin: Client, project: str, scopes: list[str], **kw: Any) -> Client:
    token = admin.create_token(scopes, project=project, **kw)["token"]
    return inprocess_client(services, token, project=project)


def routes(admin: Client) -> list[tuple[str, str]]:
    """Every documented operation that needs a token (``security: []`` marks the public ones)."""
    spec = admin._http.get("/openapi.json").json()
    found = [
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if op.get("security") != []
    ]
    assert len(found) >= 18
    return found


def fill(path: str, project: str, run_id: str) -> str:
    values = {
        "project_id": project, "name": "behave", "sync_action": "check", "run_id": run_id, "token_id": "tok_x",
        "path": "a/b.txt", "tag": "t",
    }  # fmt: skip
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)


def test_every_route_refuses_missing_bad_and_foreign_tokens(services: Services, admin: Client) -> None:
    a = admin.create_project("tenant a")["id"]
    b = admin.create_project("tenant b")["id"]
    admin.register_action(behave(), project=a)
    run_a = admin.start_run("behave", project=a)["id"]
    b_client = project_client(services, admin, b, ["admin"])
    anonymous = inprocess_client(services, token="")
    anonymous._http.headers.pop("authorization", None)
    garbage = inprocess_client(services, token="hw_not-a-real-token")
    for method, path in routes(admin):
        if path in PUBLIC:
            continue
        url = fill(path, a, run_a)
        # a route without the project in its path names it in its body (Ductape's product)
        sent = {"env": "development", "product": a, "app": "behave", "event": "check"} if "ductape" in path else {}
        for who, expected in ((anonymous, {401}), (garbage, {401}), (b_client, {403, 404})):
            answer = who._http.request(method, url, json=sent)
            if (method, path) == ("GET", "/v1/projects") and who is b_client:
                # a project token lists the projects it can see: its own, and no other
                assert answer.status_code == 200 and a not in answer.text and b in answer.text
                continue
            if path == "/metrics" and who is b_client:
                # a project's admin token reads its own project's metrics, and nothing of another's
                assert answer.status_code == 200 and f'project="{a}"' not in answer.text
                continue
            assert answer.status_code in expected, (method, url, answer.status_code, answer.text)
            body = answer.json()
            assert body["status"] == "error" and body["code"] == answer.status_code
            if answer.status_code == 401:
                assert answer.headers["www-authenticate"] == "Bearer"


def test_another_tenants_run_is_indistinguishable_from_a_missing_one(services: Services, admin: Client) -> None:
    a = admin.create_project("tenant a")["id"]
    b = admin.create_project("tenant b")["id"]
    admin.register_action(behave(), project=a)
    run_a = admin.start_run("behave", project=a)["id"]
    b_client = project_client(services, admin, b, ["runs:read", "runs:write"])
    foreign = b_client._http.get(f"/v1/projects/{b}/runs/{run_a}")
    missing = b_client._http.get(f"/v1/projects/{b}/runs/run_00000000000000000000000000")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["message"].replace(run_a, "ID") == missing.json()["message"].replace(
        "run_00000000000000000000000000", "ID"
    )
    assert b_client._http.post(f"/v1/projects/{b}/runs/{run_a}/cancel").status_code == 404
    assert b_client._http.get(f"/v1/projects/{b}/runs/{run_a}/logs").status_code == 404
    assert b_client.list_runs(project=b)["items"] == []


def test_scopes(services: Services, admin: Client) -> None:
    project = admin.create_project("scoped")["id"]
    reader = project_client(services, admin, project, ["actions:read", "runs:read"])
    with pytest.raises(ForbiddenResponse):
        reader.register_action(behave())
    admin.register_action(behave(), project=project)
    assert reader.get_action("behave")["version"] == 1
    for call in (lambda: reader.start_run("behave"), lambda: reader.call_sync("behave", "check"),
                 lambda: reader.encrypt("x-value"), lambda: reader.create_token(["runs:read"]),
                 lambda: reader.list_tokens(), lambda: reader.create_project("nope")):  # fmt: skip
        with pytest.raises(ForbiddenResponse):
            call()
    runner = project_client(services, admin, project, ["runs:write"])
    run = runner.start_run("behave")
    with pytest.raises(ForbiddenResponse):
        runner.get_run(run["id"])  # runs:write does not imply runs:read
    owner = project_client(services, admin, project, ["admin"])
    assert owner.get_run(run["id"])["id"] == run["id"]  # admin implies every scope of its project
    with pytest.raises(ForbiddenResponse):
        owner.create_project("nope")  # only the global admin creates projects


def test_token_lifecycle(services: Services, admin: Client) -> None:
    project = admin.create_project("tokens")["id"]
    created = admin.create_token(["runs:read"], name="ci", project=project)
    assert created["token"].startswith("hw_") and created["id"].startswith("tok_")
    listed = admin.list_tokens(project=project)
    assert [t["id"] for t in listed] == [created["id"]] and "token" not in listed[0]
    assert all(created["token"] not in str(v) for v in listed[0].values())
    user = inprocess_client(services, created["token"], project=project)
    assert user.list_runs()["items"] == []
    assert admin.list_tokens(project=project)[0]["last_used_at"] is not None
    admin.revoke_token(created["id"], project=project)
    with pytest.raises(UnauthorizedResponse):
        user.list_runs()
    with pytest.raises(NotFoundResponse):
        admin.revoke_token(created["id"], project=project)
    with pytest.raises(ValidationErrorResponse):
        admin.create_token(["everything"], project=project)


def test_expired_tokens_stop_working(services: Services, admin: Client) -> None:
    project = admin.create_project("expiring")["id"]
    token = admin.create_token(["runs:read"], expires_in_seconds=1, project=project)
    user = inprocess_client(services, token["token"], project=project)
    assert user.list_runs()["items"] == []
    services.repos.tenants.put_token(
        services.repos.tenants.get_token(token["id"]).__class__(
            **{**vars(services.repos.tenants.get_token(token["id"])), "expires_at": 1}
        )
    )
    with pytest.raises(UnauthorizedResponse) as caught:
        user.list_runs()
    assert "expired" in caught.value.message


def test_environments_separate_everything(services: Services, admin: Client) -> None:
    project = admin.create_project("envs")["id"]
    dev_only = project_client(services, admin, project, ["admin"], environments=["development"])
    dev_only.register_action(behave())
    run = dev_only.start_run("behave")
    prod = inprocess_client(services, dev_only.token or "", project=project, environment="production")
    with pytest.raises(ForbiddenResponse):
        prod.list_actions()
    admin_prod = Client(
        admin.url, admin.token, project=project, environment="production", transport=admin._http._transport
    )
    assert admin_prod.list_actions() == []
    with pytest.raises(NotFoundResponse):
        admin_prod.get_run(run["id"])
    with pytest.raises(NotFoundResponse):
        admin_prod.start_run("behave")
    with pytest.raises(ForbiddenResponse):
        dev_only.create_token(["admin"], environments=["production"])
    bad_env = admin._http.get(f"/v1/projects/{project}/actions", headers={"x-hatchway-environment": "Bad Env!"})
    assert bad_env.status_code == 422


def test_malformed_authorization_headers(services: Services, admin: Client) -> None:
    for header in ("Basic abc", "Bearer", "bearer  ", "hw_only", "Bearer hw_0123456789abcdef_x"):
        answer = httpx.Client(transport=admin._http._transport, base_url=admin.url).get(
            "/v1/projects/proj_local/runs", headers={"authorization": header}
        )
        assert answer.status_code == 401, header


@pytest.mark.parametrize("listed", ["actions", "runs"])
def test_the_lists_of_a_project_that_does_not_exist_are_404(admin: Client, listed: str) -> None:
    # Given the global admin, proj_local (made at start) and no proj_nope
    # When it lists proj_nope's actions or runs
    answer = admin._http.get(f"/v1/projects/proj_nope/{listed}")
    # Then the answer is a 404, as creating something there is; proj_local's empty list is a page
    assert answer.status_code == 404 and answer.json()["message"] == "no project proj_nope"
    assert admin._http.get(f"/v1/projects/proj_local/{listed}").json() == {"items": [], "next": None}
