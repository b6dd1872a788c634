"""Routes served before the resolver: raw byte bodies and paths with slashes.

File bodies are raw bytes and file paths contain ``/``, which powertools' routes cannot express (a
path parameter stops at ``/``, and its validation would read a binary body as JSON). A
:class:`RawRouter` declares such routes; :func:`hatchway.api.app.create_app` includes it like any
other router, and :class:`hatchway.api.app.Api` answers them after its pre-checks (so with the same
authentication and error shape) and documents them in the same OpenAPI document.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hatchway.api.common import SAFE_HEADERS, event_answer, too_large
from hatchway.api.errors import error_answer
from hatchway.api.scope import ROUTE
from hatchway.domain.tenants import Principal
from hatchway.errors import HatchwayError
from hatchway.runtime.contract import LAMBDA_RESPONSE_BYTES

if TYPE_CHECKING:
    from hatchway.services.files import Download

#: set by the embedded server on the events it makes (API Gateway never sends it): the answer may be
#: a stream of chunks instead of one body, so a download larger than an answer may be still passes
STREAMS = "hatchway.streams"

Handler = Callable[[dict[str, Any], Principal, "re.Match[str]"], dict[str, Any]]


@dataclass
class RawRoute:
    """A route served before the resolver (raw bytes, paths with slashes)."""

    method: str
    pattern: re.Pattern[str]
    handle: Handler
    doc_path: str
    doc: dict[str, Any]


class RawRouter:
    """Raw routes in the order they are matched (the first match wins)."""

    def __init__(self) -> None:
        self.routes: list[RawRoute] = []

    def route(
        self, method: str, pattern: re.Pattern[str], doc_path: str, doc: dict[str, Any]
    ) -> Callable[[Handler], Handler]:
        """Declare ``method`` on paths matching ``pattern`` (``doc``: its OpenAPI operation at ``doc_path``)."""

        def declare(handle: Handler) -> Handler:
            self.routes.append(RawRoute(method, pattern, handle, doc_path, doc))
            return handle

        return declare

    def __iter__(self) -> Iterator[RawRoute]:
        return iter(self.routes)


def body_bytes(event: dict[str, Any]) -> bytes:
    """The request's body as bytes."""
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()


def binary_answer(data: bytes, name: str) -> dict[str, Any]:
    """A download of ``data`` named after the last part of ``name``."""
    return {
        "statusCode": 200,
        "headers": _download_headers(name),
        "body": base64.b64encode(data).decode(),
        "isBase64Encoded": True,
        "cookies": [],
    }


#: what an inline download's answer takes besides its base64 body (status, headers, JSON keys)
INLINE_HEADROOM = 4096


def download_answer(download: Download, name: str, max_bytes: int, event: dict[str, Any]) -> dict[str, Any]:
    """The answer to a download: the bytes in the answer up to ``max_bytes`` (HATCHWAY_MAX_ANSWER_BYTES,
    API Gateway's 6 MiB by default) while their base64 fits Lambda's response limit (about 4.7 MB);
    beyond, streamed by the embedded server in bounded memory, or on Lambda a 303 to a link that
    reads it for a few minutes (S3 answers it: no size limit, no Lambda time)."""
    # inline only what fits Lambda's response base64-encoded (4/3 of the bytes, and the headers)
    if download.size <= max_bytes and 4 * -(-download.size // 3) <= LAMBDA_RESPONSE_BYTES - INLINE_HEADROOM:
        return binary_answer(download.read(), name)
    if event.get(STREAMS):
        headers = {**_download_headers(name), "Content-Length": str(download.size)}
        return {"statusCode": 200, "headers": headers, "body": "", "isBase64Encoded": False, "cookies": [],
                "stream": download.chunks}  # fmt: skip
    url = download.link()
    if url is None:  # a store without links behind API Gateway: not a deployment hatchway makes
        raise too_large(download.size, max_bytes, "a download")
    return {"statusCode": 303, "headers": {"Location": url, **SAFE_HEADERS}, "body": "", "isBase64Encoded": False}


def _download_headers(name: str) -> dict[str, str]:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name.rsplit("/", 1)[-1]) or "file"
    return {"Content-Type": "application/octet-stream", "Content-Disposition": f'attachment; filename="{safe}"',
            **SAFE_HEADERS}  # fmt: skip


def serve_raw(routes: list[RawRoute], event: dict[str, Any], who: Principal | None, path: str) -> dict[str, Any] | None:
    """The answer of a raw route matching the request, or None."""
    method = (event.get("requestContext", {}).get("http", {}).get("method") or "GET").upper()
    allowed = []
    for route in routes:
        match = route.pattern.match(path)
        if match is None:
            continue
        allowed.append(route.method)
        if route.method == method:
            assert who is not None  # noqa: S101 - raw routes are never public
            ROUTE.set(route.doc_path)
            try:
                return route.handle(event, who, match)
            except HatchwayError as exc:
                return event_answer(*error_answer(exc))
    if allowed:
        body = {"status": "error", "error": "Method not allowed", "code": 405,
                "message": f"{method} is not allowed here; use {', '.join(sorted(allowed))}"}  # fmt: skip
        return event_answer(405, body, {"Allow": ", ".join(sorted(allowed))})
    return None
