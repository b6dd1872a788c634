"""GET /v1/projects lists what the token can see; GET / leads a browser to the console."""

from __future__ import annotations

from pathlib import Path

import httpx

from hatchway.api import create_app
from hatchway.client import Client, Unauthorized
from hatchway.services import Services
from hatchway.testing import ResolverTransport
from hatchway.wiring import bootstrap, build_services
from tests.conftest import inprocess_client, make_settings


def test_the_global_admin_lists_every_project_page_by_page(client: Client) -> None:
    # Given two projects beside the bootstrap's own
    made = {client.create_project(f"team {n}").id for n in (1, 2)}
    # When the global admin lists projects two at a time
    first = client.request("GET", "/v1/projects", params={"limit": 2})
    second = client.request("GET", "/v1/projects", params={"limit": 2, "cursor": first["next"]})
    # Then the pages hold every project once, by id, in the API's list shape
    ids = [p["id"] for p in first["items"] + second["items"]]
    assert ids == sorted(ids) and set(ids) == {"proj_local", *made} and second["next"] is None
    assert set(first["items"][0]) == {"id", "name", "created_at"}
    # and the client's iterator walks them all
    assert {p.id for p in client.list_projects()} == {"proj_local", *made}


def test_a_project_token_lists_only_its_own_project(client: Client, services: Services) -> None:
    other = client.create_project("other").id
    token = client.create_token(["runs:read"], project=other).token
    with inprocess_client(services, token, project=other) as mine:
        assert [p.id for p in mine.list_projects()] == [other]
        # and it still creates no project
        answer = mine.request("GET", "/v1/projects", params={"limit": 1})
        assert answer == {"items": [{"id": other, "name": "other", "created_at": answer["items"][0]["created_at"]}],
                          "next": None}  # fmt: skip
    with inprocess_client(services, "") as anonymous:
        anonymous._http.headers.pop("authorization", None)
        try:
            anonymous.list_projects()
            raise AssertionError("an anonymous caller listed projects")
        except Unauthorized:
            pass


def root_answer(services: Services) -> httpx.Response:
    app = create_app(services)
    with httpx.Client(transport=ResolverTransport(app.resolve), base_url="http://hatchway.local") as http:
        return http.get("/", follow_redirects=False)


def test_the_root_redirects_to_the_console_without_a_token(services: Services) -> None:
    answer = root_answer(services)
    assert answer.status_code == 302 and answer.headers["location"] == "ui/"


def test_without_the_console_the_root_is_no_route(tmp_path: Path) -> None:
    services = build_services(make_settings(tmp_path / "home", is_console_enabled=False))
    bootstrap(services)
    try:
        answer = root_answer(services)
    finally:
        services.close()
    assert answer.status_code == 404 and answer.json()["status"] == "error"
