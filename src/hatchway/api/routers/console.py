"""The web console: static files served at ``/ui`` by the API's own resolver.

The console is a single-page application built from ``src/ui`` (``scripts/build-ui``) into the
package's ``ui/`` directory, so ``pip install`` needs no Node. It is served through the same
resolver as the API, hence also behind API Gateway, and talks only to the public API with the
user's token (kept in the tab's sessionStorage, sent as a Bearer header: never a cookie, so no
CSRF). Every answer carries a strict Content-Security-Policy: scripts, styles and connections
only from this origin, nothing inline, no framing. Files whose names carry a content hash are
cached for a year; ``index.html`` is revalidated by its ETag.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from hatchway.api.common import new_router
from hatchway.errors import NotFound

if TYPE_CHECKING:
    from hatchway.compat import Compat
    from hatchway.ports import Telemetry
    from hatchway.services import Services

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".png": "image/png",
}
#: esbuild's content hash in a file name (app-3FQ2ZK7M.js): such a file never changes
_HASHED = re.compile(r"-[A-Z0-9]{8}\.[a-z]+$")
_COMPRESSIBLE = (".html", ".js", ".css", ".svg", ".json", ".txt", ".webmanifest")
INDEX = "index.html"


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    etag: str
    content_type: str
    is_immutable: bool


class Assets:
    """The built console, read once from the package's ``ui/`` directory."""

    def __init__(self, package: str = "hatchway", directory: str = "ui") -> None:
        self.package = package
        self.directory = directory
        self._files: dict[str, Asset] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Asset]:
        files: dict[str, Asset] = {}
        root = resources.files(self.package).joinpath(self.directory)
        if not root.is_dir():
            return files
        for entry in root.iterdir():
            name = entry.name
            suffix = name[name.rfind(".") :] if "." in name else ""
            if not entry.is_file() or name.startswith(".") or suffix not in TYPES:
                continue
            body = entry.read_bytes()
            packed = gzip.compress(body, 9, mtime=0) if suffix in _COMPRESSIBLE and len(body) > 512 else None
            files[name] = Asset(
                body=body,
                gzipped=packed if packed is not None and len(packed) < len(body) else None,
                etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
                content_type=TYPES[suffix],
                is_immutable=bool(_HASHED.search(name)),
            )
        return files

    def get(self, name: str) -> Asset | None:
        if self._files is None:
            with self._lock:
                if self._files is None:
                    self._files = self._load()
        return self._files.get(name)


F = TypeVar("F", bound=Callable[..., Any])


def _unvalidated(fn: F) -> F:
    """Pass a file's bytes through untouched: powertools validates (and re-encodes as JSON) a
    route's answer against its return annotation, so the annotation is hidden from it."""
    fn.__annotations__.pop("return", None)
    return fn


def _documented(extra: int) -> dict[int, Any]:
    """The answers of a console route: a file (any of the console's types), ``extra``, or an error."""
    from hatchway.api import schemas as S

    text = {"schema": {"type": "string"}}
    documented = S.responses(200, None, "a file of the console", 404)
    documented[200] = {"description": "a file of the console", "content": dict.fromkeys(TYPES.values(), text)}
    if extra == 304:
        documented[304] = {"description": "not modified (ETag)"}
    else:
        documented[extra] = {"description": "to ui/ (relative)", "content": {TYPES[".txt"]: text}}
    return documented


def router(services: Services, compat: Compat, telemetry: Telemetry, assets: Assets | None = None) -> Router:
    """Serve the console at ``/ui/`` (``/ui`` redirects there; relative, so an API stage prefix stays)."""
    app = new_router()
    files = assets or Assets()

    def answer(name: str) -> Response[bytes | str]:
        asset = files.get(name)
        if asset is None:
            if name == INDEX:
                raise NotFound("the console is not built into this installation (run scripts/build-ui)")
            raise NotFound(f"no console file {name}")
        headers = {
            **SECURITY_HEADERS,
            "ETag": asset.etag,
            "Vary": "Accept-Encoding",
            "Cache-Control": "public, max-age=31536000, immutable" if asset.is_immutable else "no-cache",
        }
        event_headers = app.current_event.headers
        if asset.etag in (event_headers.get("if-none-match") or ""):
            return Response(304, None, "", headers=headers)
        if asset.gzipped is not None and "gzip" in (event_headers.get("accept-encoding") or ""):
            return Response(200, asset.content_type, asset.gzipped, headers={**headers, "Content-Encoding": "gzip"})
        return Response(200, asset.content_type, asset.body, headers=headers)

    @app.get(
        "/ui", security=[], tags=["console"], summary="The web console (redirects to /ui/)", responses=_documented(308)
    )
    def console_root() -> Response[str]:
        return Response(308, TYPES[".txt"], "the console is at ui/", headers={"Location": "ui/", **SECURITY_HEADERS})

    @app.get("/", security=[], tags=["console"], summary="The gateway's root (redirects to ui/)",
             responses=_documented(302))  # fmt: skip
    def root() -> Response[str]:
        # temporary: the root may answer something of its own one day
        return Response(302, TYPES[".txt"], "the console is at ui/", headers={"Location": "ui/", **SECURITY_HEADERS})

    @app.get("/ui/", security=[], tags=["console"], summary="The web console", responses=_documented(304))
    @_unvalidated
    def console_index() -> Response[bytes | str]:
        return answer(INDEX)

    @app.get(
        "/ui/<name>", security=[], tags=["console"], summary="A file of the web console", responses=_documented(304)
    )
    @_unvalidated
    def console_file(name: Annotated[str, Path(description="file name", max_length=128)]) -> Response[bytes | str]:
        return answer(name)

    return app
