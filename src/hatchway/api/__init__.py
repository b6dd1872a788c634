"""The HTTP API: routes, error mapping and OpenAPI on powertools' resolver."""

from hatchway.api.app import Api, create_app

__all__ = ["Api", "create_app"]
