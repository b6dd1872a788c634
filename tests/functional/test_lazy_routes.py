"""The Lambda's API includes its rarely used routes on first use (hatchway.api.groups) and answers
exactly as the API with every route included: the first request to each group, requests under a
group's paths that no route answers (404, 405), preflights, and the route table and OpenAPI
document once everything is included. A cold import with template.yaml's environment leaves the
groups' modules out.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from bench.coldstart import template_environment

from hatchway.api import create_app
from hatchway.api.app import ROUTERS, _lazy_router_module
from hatchway.api.groups import LazyGroup, RouteGroups
from hatchway.config import Settings
from hatchway.server import LambdaContext, http_event
from hatchway.services import Services
from hatchway.wiring import bootstrap, build_services
from tests.functional.test_api_snapshot import SNAPSHOTS, openapi_bytes, route_table
from tests.functional.test_fastpath_parity import World, assert_same_answers, comparable, frozen_routes
from tests.helpers import ADMIN_TOKEN, REPO

LAZY = [name for name, paths in ROUTERS if paths is not None]


def lazy_world(home: Path) -> World:
    """A gateway like the parity test's, whose API is built afresh with every lazy group pending."""
    world = World(home, fastpath=True)
    world.api = create_app(world.services, lazy=True)
    assert world.api.groups.pending == LAZY
    return world


def test_a_cold_import_with_the_templates_environment_leaves_the_lazy_groups_out(tmp_path: Path) -> None:
    # Given the environment template.yaml gives the API function, as the P6 bench row reads it
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HATCHWAY_", "PYTHON"))}
    env.update({"PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), **template_environment()})
    env["HATCHWAY_HOME"] = str(tmp_path)
    # When a fresh interpreter imports the Lambda handler
    probe = "import json, sys, handlers.api; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(json.loads(done.stdout))
    # Then the routers every request may need are in, and the lazy groups' modules are not
    assert {"hatchway.api.routers.runs", "hatchway.api.routers.actions", "hatchway.api.groups"} <= loaded
    assert loaded.isdisjoint(f"hatchway.api.routers.{name}" for name in LAZY)


@pytest.mark.parametrize(("method", "route"), frozen_routes(), ids=[f"{m} {p}" for m, p in frozen_routes()])
def test_the_first_request_to_each_route_answers_as_with_every_route_included(
    tmp_path: Path, method: str, route: str
) -> None:
    # Given a gateway with every route included and one whose lazy API has included none of its groups
    eager, lazy = World(tmp_path / "eager", fastpath=True), lazy_world(tmp_path / "lazy")
    try:
        # When both answer the same requests (the first is the first to its route, for the lazy API)
        # Then status, headers and body are the same
        assert_same_answers(lazy, eager, method, route)
    finally:
        eager.close()
        lazy.close()


#: requests under a lazy group's paths (or under none) that no route answers, and odd ones
STRAYS = [
    ("GET", "/v1/projects/proj_local/pipelines/pipe/nonsense"),
    ("PATCH", "/v1/projects/proj_local/pipelines"),
    ("GET", "/v1/ductape/actions/run"),
    ("GET", "/v1/ductape"),
    ("DELETE", "/v1/oauth/token"),
    ("GET", "/v1/connect/proj_local/actions/run"),
    ("GET", "/v1/projects/proj_local/actions/behave/action/check"),
    ("POST", "/metrics"),
    ("POST", "/v1/projects/proj_local/stats"),
    ("GET", "/v1/projects/proj_local/caches"),
    ("POST", "/v1/projects/proj_local/sessions/tag1"),
    ("POST", "/ui/index.html"),
    ("GET", "/ui/a/b"),
    ("GET", "/nowhere"),
    ("PATCH", "/v1/projects"),
    ("GET", "/v1/projects/"),
    ("PUT", "/v1/projects/proj_local"),
    ("GET", "/v1/projects/proj_local/tokens/tok_x"),
    ("GET", "/v1/projects/proj_local/encrypt"),
    ("GET", "/v1/projects?limit=1&bogus=2"),
    ("GET", "/v1/projects/proj_local/stats?window=hour&bogus=1"),
    ("GET", "/v1/projects/proj_local/runs?limit=1&bogus=1"),
    ("GET", "/v1/projects/proj_local/pipelines?limit=1"),
]


@pytest.mark.parametrize(("method", "target"), STRAYS)
def test_requests_no_route_answers_get_the_same_404_405_or_validation_answer(
    tmp_path: Path, method: str, target: str
) -> None:
    eager, lazy = World(tmp_path / "eager", fastpath=True), lazy_world(tmp_path / "lazy")
    try:
        path, _, query = target.partition("?")
        expected = eager.api.resolve(query_event(method, path, query), LambdaContext())
        got = lazy.api.resolve(query_event(method, path, query), LambdaContext())
        assert comparable(got) == comparable(expected)
        assert expected["statusCode"] >= 400 or query
    finally:
        eager.close()
        lazy.close()


def query_event(method: str, path: str, query: str) -> dict[str, Any]:
    headers = [(b"authorization", f"Bearer {ADMIN_TOKEN}".encode()), (b"content-type", b"application/json")]
    return http_event(method, path, query, headers, b"")


def test_once_everything_is_included_the_route_table_and_document_are_the_frozen_ones(services: Services) -> None:
    # Given a lazy API that answered a request of one group
    api = create_app(services, lazy=True)
    assert (
        api.resolve(query_event("GET", "/v1/projects/proj_local/pipelines", ""), LambdaContext())["statusCode"] == 200
    )
    assert "pipelines" not in api.groups.pending
    # When its OpenAPI document is asked for (which includes every group)
    document = openapi_bytes(api)
    # Then nothing is pending, the routes are searched in the frozen order and the document is the frozen one
    assert api.groups.pending == []
    assert route_table(api) == (SNAPSHOTS / "routes.txt").read_text()
    assert document == (SNAPSHOTS / "openapi.json").read_bytes()


@pytest.mark.parametrize("name", LAZY)
def test_a_lazy_groups_routes_answer_only_paths_under_its_own(services: Services, name: str) -> None:
    # the invariant that makes a lazy API answer as an eager one: a request under no group's paths
    # cannot be answered by that group's routes, so it need not be included first
    paths = dict(ROUTERS)[name]
    assert paths is not None
    router = _router(services, name)
    pattern = LazyGroup(name, paths, lambda: router).pattern()
    rules = {route[0] for route in router._routes}
    assert rules
    for rule in rules:
        template = "".join("*" if part.startswith("<") else part for part in _split(rule))
        assert any(
            template == p.removesuffix("$") or (not p.endswith("$") and template.startswith(p + "/")) for p in paths
        ), rule
        assert pattern.match(rule.replace("<", "x").replace(">", "x")), rule
        # a dynamic part (<name>) matches within one segment: powertools' pattern for it has no "/"
        compiled = APIGatewayHttpResolver._compile_regex(rule)
        assert "<" not in rule or not compiled.match(re.sub(r"<\w+>", "a/b", rule)), rule


def _split(rule: str) -> list[str]:
    return re.split(r"(<\w+>)", rule)


def _router(services: Services, name: str) -> Any:
    from hatchway.compat import Compat

    return _lazy_router_module(name).router(services, Compat.of(services), services.telemetry)


def test_groups_are_included_once_and_in_order_when_many_threads_ask_at_once(tmp_path: Path) -> None:
    # Given a lazy API nothing has been asked of
    services = build_services(
        Settings.from_env({"HATCHWAY_HOME": str(tmp_path), "HATCHWAY_BOOTSTRAP_TOKEN": ADMIN_TOKEN})
    )
    bootstrap(services)
    try:
        api = create_app(services, lazy=True)
        built: list[str] = []
        for index, (_, group, paths) in enumerate(api.groups._pending):
            counted = LazyGroup(group.name, group.paths, _counting(group, built))
            api.groups._pending = (*api.groups._pending[:index], (_, counted, paths), *api.groups._pending[index + 1 :])
        targets = ["/v1/projects/proj_local/pipelines", "/metrics", "/v1/projects/proj_local/caches/t", "/ui/",
                   "/v1/projects/proj_local/tokens"] * 4  # fmt: skip
        answers: list[int] = []
        start = threading.Barrier(len(targets))

        def ask(path: str) -> None:
            start.wait()
            answers.append(api.resolve(query_event("GET", path, ""), LambdaContext())["statusCode"])

        # When sixteen requests to four groups arrive at once
        threads = [threading.Thread(target=ask, args=(path,)) for path in targets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        # Then every one was answered, each group was built once, and the routes are in the frozen order
        assert len(answers) == len(targets) and 500 not in answers
        assert sorted(built) == ["console", "extras", "observe", "pipelines", "projects"]
        api.groups.include_all()
        assert sorted(built) == sorted(LAZY)
        assert route_table(api) == (SNAPSHOTS / "routes.txt").read_text()
    finally:
        services.close()


def _counting(group: LazyGroup, built: list[str]) -> Any:
    def build() -> Any:
        built.append(group.name)
        return group.build()

    return build


def test_a_preflight_under_a_lazy_groups_path_is_answered_as_before(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "HATCHWAY_HOME": str(tmp_path),
            "HATCHWAY_BOOTSTRAP_TOKEN": ADMIN_TOKEN,
            "HATCHWAY_CORS_ORIGINS": "https://app.example",
        }
    )
    services = build_services(settings)
    try:
        headers = [(b"origin", b"https://app.example"), (b"access-control-request-method", b"PUT")]
        preflight = http_event("OPTIONS", "/v1/projects/proj_local/pipelines/pipe", "", headers, b"")
        eager, lazy = create_app(services), create_app(services, lazy=True)
        assert lazy.resolve(preflight, LambdaContext()) == eager.resolve(preflight, LambdaContext())
        assert eager.resolve(preflight, LambdaContext())["statusCode"] == 204
    finally:
        services.close()


def test_route_groups_include_a_deferred_group_once() -> None:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from hatchway.api.common import new_router

    # Given a group deferred between two routers
    resolver = APIGatewayHttpResolver()
    groups = RouteGroups(resolver)
    built = []

    def later() -> Any:
        built.append(1)
        router = new_router()
        router.get("/b/<x>")(lambda x: x)
        return router

    first, last = new_router(), new_router()
    first.get("/a/<x>")(lambda x: x)
    last.get("/c/<x>")(lambda x: x)
    groups.include(first)
    groups.defer(LazyGroup("b", ("/b",), later))
    groups.include(last)
    # When paths outside it, then under it (twice), are made ready for
    groups.ready_for("/a/1")
    groups.ready_for("/bb/1")
    assert built == [] and groups.pending == ["b"]
    groups.ready_for("/b/1")
    groups.ready_for("/b/2")
    groups.include_all()
    # Then it was built once, and its route sits where it was declared
    assert built == [1] and groups.pending == []
    assert [route.path for route in resolver._dynamic_routes] == ["/a/<x>", "/b/<x>", "/c/<x>"]


def test_a_groups_paths_are_prefixes_of_whole_segments_or_exact_paths() -> None:
    pattern = LazyGroup("g", ("/a$", "/b/*$", "/c", "/d/*/e"), lambda: None).pattern()  # type: ignore[arg-type,return-value]
    under = ["/a", "/b/1", "/c", "/c/", "/c/x/y", "/d/1/e", "/d/1/e/f"]
    not_under = ["/a/", "/a/x", "/ab", "/b/1/2", "/b/", "/cx", "/d//e", "/d/1/ef", "/x/c"]
    assert [path for path in under if not pattern.match(path)] == []
    assert [path for path in not_under if pattern.match(path)] == []
