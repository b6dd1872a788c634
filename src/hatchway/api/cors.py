"""Cross-origin requests from the browser pages of an allow-list (``HATCHWAY_CORS_ORIGINS``).

The gateway answers CORS itself, around every answer (the resolver's, a raw route's, a refusal
before either), rather than through powertools' ``CORSConfig``: a preflight carries no token and
must be answered before authentication, and a 401 or 413 decided before the resolver must still
be readable by the page that caused it. Tokens travel in ``Authorization``, never in cookies, so
credentials are not allowed and ``*`` may be configured safely. With no origins configured
nothing here applies and an ``OPTIONS`` request is answered as any other request.
"""

from __future__ import annotations

from typing import Any

from hatchway.api.common import header

#: what a page may send, besides the CORS-safelisted headers
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Hatchway-Environment, traceparent, tracestate"
#: what a page may read of an answer, besides the CORS-safelisted headers
EXPOSE_HEADERS = "Location, Retry-After, ETag, Content-Disposition, X-Hatchway-Cache"
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE"
#: how long a browser may keep a preflight's answer
MAX_AGE_SECONDS = 600


class Cors:
    """The CORS answers for the configured ``origins`` (exact ``scheme://host[:port]``, or ``*``)."""

    def __init__(self, origins: tuple[str, ...]) -> None:
        self.origins = frozenset(origins)
        self.is_enabled = bool(self.origins)
        self.is_any = "*" in self.origins

    def _allowed(self, event: dict[str, Any]) -> str | None:
        """The value of ``Access-Control-Allow-Origin`` for this request, or None."""
        origin = header(event, "origin")
        if not origin:
            return None
        if self.is_any:
            return "*"
        return origin if origin in self.origins else None

    def preflight(self, event: dict[str, Any], method: str) -> dict[str, Any] | None:
        """The answer to a preflight request (no token needed), or None when ``event`` is none."""
        if not self.is_enabled or method != "OPTIONS" or not header(event, "access-control-request-method"):
            return None
        origin = self._allowed(event)
        headers = {"Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"}
        if origin is None:
            # an origin off the list learns nothing but that: the browser refuses the call itself
            return {"statusCode": 204, "headers": headers, "body": "", "isBase64Encoded": False}
        headers.update(
            {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
            }
        )
        return {"statusCode": 204, "headers": headers, "body": "", "isBase64Encoded": False}

    def decorate(self, event: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        """``answer`` with the headers that let an allowed page read it."""
        if not self.is_enabled:
            return answer
        headers = {**(answer.get("headers") or {}), "Vary": "Origin"}
        origin = self._allowed(event)
        if origin is not None:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        return {**answer, "headers": headers}
