"""Request validation worked out once per route, not once per request.

powertools' ``OpenAPIRequestValidationMiddleware`` re-derives, on every request, facts about each
parameter that never change - is it a scalar, a sequence, a model, how is the body embedded -
before it validates anything: about half the CPU of a run submission. This middleware derives
them once per route and validates the common case itself: path and header scalars, query scalars
when the request has no query string (they all take their defaults), and at most one JSON body
that is a pydantic model. It uses the route's own pydantic fields and reports errors exactly as
powertools does. Every other request (a query string, cookies, form or multipart bodies, sequence
or model parameters) goes through powertools' general path unchanged.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware
from aws_lambda_powertools.event_handler.openapi.compat import get_missing_field_error, is_scalar_field
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import BaseModel

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import Response
    from aws_lambda_powertools.event_handler.api_gateway import Route
    from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
    from aws_lambda_powertools.event_handler.openapi.compat import ModelField
    from aws_lambda_powertools.event_handler.types import EventHandlerInstance


@dataclass(frozen=True)
class Plan:
    """What a route's request validation needs, derived once."""

    path: tuple[ModelField, ...]
    query: tuple[ModelField, ...]
    headers: tuple[ModelField, ...]
    body: ModelField | None

    @classmethod
    def of(cls, route: Route) -> Plan | None:
        """The plan of ``route``, or None when its parameters need powertools' general path."""
        dependant = route.dependant
        scalars = [*dependant.path_params, *dependant.query_params, *dependant.header_params]
        if dependant.cookie_params or not all(is_scalar_field(field) for field in scalars):
            return None
        body = None
        if dependant.body_params:
            if len(dependant.body_params) > 1:
                return None
            body = dependant.body_params[0]
            if getattr(body.field_info, "embed", None) or not _is_model(body.field_info.annotation):
                return None
        return cls(tuple(dependant.path_params), tuple(dependant.query_params), tuple(dependant.header_params), body)

    def check(self, route_args: dict[str, Any], headers: Any, body: Any) -> tuple[dict[str, Any], list[Any]]:
        """The route's arguments validated (a request without a query string), and the errors."""
        values: dict[str, Any] = {}
        errors: list[Any] = []
        for field in self.path:
            validate(field, route_args.get(field.alias), ("path", field.alias), values, errors)
        for field in self.query:
            validate(field, None, ("query", field.alias), values, errors)
        for field in self.headers:
            validate(field, headers.get(field.alias), ("header", field.alias), values, errors)
        if self.body is not None:
            # the body alone, not embedded under its name: powertools validates it at ("body",)
            validate(self.body, body, ("body",), values, errors)
        return values, errors


def _is_model(annotation: Any) -> bool:
    """A pydantic model (not a root model), optionally ``| None``: never a sequence, never a file."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return len(members) == 1 and _is_model(members[0])
    return (
        isinstance(annotation, type)
        and issubclass(annotation, BaseModel)
        and not getattr(annotation, "__pydantic_root_model__", False)
    )


class CompiledRequestValidation(OpenAPIRequestValidationMiddleware):
    """powertools' request validation with each route's plan derived once (see the module docstring)."""

    def __init__(self) -> None:  # powertools' own __init__ sets nothing
        self._plans: dict[int, Plan | None] = {}

    def handler(self, app: EventHandlerInstance, next_middleware: NextMiddleware) -> Response[Any]:
        route: Route = app.context["_route"]
        key = id(route)  # routes live as long as the resolver
        if key not in self._plans:
            self._plans[key] = Plan.of(route)
        plan = self._plans[key]
        event = app.current_event
        if plan is None or event.get("rawQueryString") or event.get("queryStringParameters") or event.get("cookies"):
            return super().handler(app, next_middleware)

        body = self._get_body(app) if plan.body is not None else None
        if isinstance(body, list) and body:
            body = body[0]  # as powertools does where one object is expected
        values, errors = plan.check(app.context["_route_args"], event.resolved_headers_field, body)
        if errors:
            raise RequestValidationError(errors)
        app.context["_route_args"] = values
        return next_middleware(app)


def validate(field: ModelField, value: Any, loc: tuple[str, ...], values: dict[str, Any], errors: list[Any]) -> None:
    if value is None:
        if field.required:
            errors.append(get_missing_field_error(loc))
        else:
            values[field.name] = field.get_default()
        return
    validated, problems = field.validate(value=value, loc=loc)
    if problems:
        errors.extend(problems)
    values[field.name] = validated
