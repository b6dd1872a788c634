"""The HTTP API: routes, error mapping and OpenAPI on powertools' resolver."""

from hatchway.api.app import create_app

__all__ = ["create_app"]
