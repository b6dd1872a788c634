"""In-process plumbing for tests and embedding: the API without sockets.

:class:`ResolverTransport` lets :class:`hatchway.client.Client` talk to a resolver directly: each
request becomes the same API Gateway event the local server would build, so a test suite can run
once in-process and once against a real ``hatchway serve`` with the same client calls.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx

from hatchway.server import LambdaContext, http_event


class ResolverTransport(httpx.BaseTransport):
    """An httpx transport that answers from ``resolve(event, context)``."""

    def __init__(self, resolve: Callable[[dict[str, Any], Any], dict[str, Any]], max_body_bytes: int = 6 << 20) -> None:
        self.resolve = resolve
        self.max_body_bytes = max_body_bytes
        self.context = LambdaContext()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        headers = [(k.lower(), v) for k, v in request.headers.raw]
        event = http_event(
            request.method, request.url.path, request.url.query.decode(), headers, body, scheme=request.url.scheme
        )
        result = self.resolve(event, self.context)
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        return httpx.Response(int(result["statusCode"]), headers=result.get("headers") or {}, content=data)
