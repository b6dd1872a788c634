"""The private powertools members the API relies on exist, with the parameters we call them with.

``hatchway.api.fastpath`` (the fast path), ``hatchway.api.validation`` (validation planned once per
route) and ``hatchway.api.resolver`` (per-thread request state) use members of powertools that are not
its public API, so ``pyproject.toml`` pins one exact release. A bump of that pin fails here, in one
named place, when the new release renamed or reshaped one of them.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from importlib import metadata
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.api_gateway import BaseRouter, ResponseBuilder, Route
from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware

from hatchway.api import fastpath
from tests.helpers import REPO


def parameters(function: Any) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]


def test_powertools_is_pinned_to_the_installed_release() -> None:
    # Given the project's dependencies
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in dependencies if re.match(r"aws-lambda-powertools\b", d)]
    # Then powertools is pinned to one exact version, the one installed
    assert pins == [f"aws-lambda-powertools=={metadata.version('aws-lambda-powertools')}"]


def test_the_resolver_members_the_fast_path_reads_exist() -> None:
    resolver = APIGatewayHttpResolver(enable_validation=True)
    for name in fastpath.INTERNALS:
        assert hasattr(resolver, name), name
    assert isinstance(resolver._static_routes, list) and isinstance(resolver._dynamic_routes, list)
    assert parameters(resolver._to_proxy_event) == ["event"]
    assert parameters(resolver._to_response) == ["result"]
    assert parameters(resolver._call_exception_handler) == ["exp", "route"]
    assert callable(resolver._serializer)


def test_routes_carry_what_the_fast_path_and_the_validation_plan_read() -> None:
    # Given a route with a path parameter, a header, a body and a typed answer
    resolver = APIGatewayHttpResolver(enable_validation=True)

    @resolver.post("/things/<thing>")
    def put(thing: str) -> dict[str, Any]:
        return {}

    route = resolver._dynamic_routes[0]
    assert isinstance(route, Route)
    # Then it has the fields read per request
    for name in ("method", "rule", "path", "openapi_path", "func", "enable_validation"):
        assert hasattr(route, name), name
    dependant = route.dependant
    for name in ("path_params", "query_params", "header_params", "cookie_params", "body_params", "return_param"):
        assert hasattr(dependant, name), name
    assert route.rule.match("/things/a").groupdict() == {"thing": "a"}
    assert dependant.return_param is not None and hasattr(dependant.return_param, "type_")


def test_the_response_builder_takes_the_arguments_we_pass() -> None:
    assert parameters(ResponseBuilder.__init__) == ["response", "serializer", "route"]
    assert parameters(ResponseBuilder.build) == ["event", "cors"]


@pytest.mark.parametrize("name", ["current_event", "lambda_context", "context", "processed_stack_frames"])
def test_the_request_state_kept_per_thread_is_where_powertools_keeps_it(name: str) -> None:
    # hatchway.api.resolver replaces these with per-thread descriptors on its resolver class
    assert name in BaseRouter.__annotations__ or hasattr(APIGatewayHttpResolver(), name), name


def test_the_request_validation_middleware_is_found_where_we_install_ours() -> None:
    # create_app sets resolver._request_validation_middleware; powertools builds each route's stack from it
    source = inspect.getsource(Route)
    assert "_request_validation_middleware" in source
    assert parameters(OpenAPIRequestValidationMiddleware.handler) == ["app", "next_middleware"]
    assert parameters(OpenAPIRequestValidationMiddleware._get_body) == ["app"]
