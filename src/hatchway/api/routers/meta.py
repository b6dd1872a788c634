"""``/health``, ``/openapi.json`` and ``/docs`` (Swagger UI with powertools' bundled assets, no CDN)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from hatchway import __version__
from hatchway.api import schemas as S
from hatchway.api.common import JSON, json_answer, new_router
from hatchway.api.errors import dumps

if TYPE_CHECKING:
    from hatchway.compat import Compat
    from hatchway.ports import Telemetry
    from hatchway.services import Services


def router(services: Services, compat: Compat, telemetry: Telemetry, document: Callable[[], dict[str, Any]]) -> Router:
    """The meta routes; ``document`` is the API's OpenAPI document (built on first use)."""
    app = new_router()
    cached: dict[str, str] = {}

    @app.get("/health", tags=["meta"], summary="Liveness", responses=S.responses(200, S.HEALTH, "the gateway is up"))
    def health() -> Response[str]:
        return json_answer(200, {"status": "ok", "version": __version__})

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> Response[str]:
        if "json" not in cached:
            cached["json"] = dumps(document())
        return Response(200, JSON, cached["json"])

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response[str]:
        if "html" not in cached:
            cached["html"] = _swagger_html(dumps(document()))
        return Response(200, "text/html; charset=utf-8", cached["html"])

    return app


def _swagger_html(spec: str) -> str:
    """Swagger UI with powertools' bundled assets (no CDN), showing ``spec``."""
    from pathlib import Path

    import aws_lambda_powertools.event_handler.openapi.swagger_ui as swagger_ui

    assets = Path(swagger_ui.__file__).parent
    return swagger_ui.generate_swagger_html(
        spec.replace("</", "<\\/"),
        (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (assets / "swagger-ui.min.css").read_text(encoding="utf-8"),
        "",
        None,
    )
