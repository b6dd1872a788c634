"""The API's route table and its ``/openapi.json`` bytes, frozen.

Refactors that move routes between modules (routers, the raw byte routes, the fast path) must not
change what the API is: which routes exist, in which order they are searched (the first match wins),
and the OpenAPI document clients generate code from. The snapshots in ``snapshots/`` are that
API; a difference fails here with the lines that changed.

A deliberate change of the API (a new route, a new field, a powertools upgrade that reorders the
document) regenerates them, and the diff of the snapshot files goes into the commit for review::

    HATCHWAY_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/functional/test_api_snapshot.py

Without that variable the snapshots are only read, never written.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

from hatchway.api import create_app
from hatchway.api.app import Api
from hatchway.server import LambdaContext, http_event
from hatchway.services import Services

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("HATCHWAY_UPDATE_SNAPSHOTS") == "1"


def route_table(api: Api) -> str:
    """Every route in the order a request is matched: raw byte routes (answered before the resolver),
    then powertools' static routes, then its dynamic ones, each in registration order."""
    lines = ["# kind method path, in the order a request is matched"]
    lines += [f"raw {route.method} {route.pattern.pattern}" for route in api.raw]
    lines += [f"static {route.method} {route.path}" for route in api.resolver._static_routes]
    lines += [f"dynamic {route.method} {route.path}" for route in api.resolver._dynamic_routes]
    return "\n".join(lines) + "\n"


def openapi_bytes(api: Api) -> bytes:
    """``GET /openapi.json`` as a client receives it (public: no token)."""
    answer = api.resolve(http_event("GET", "/openapi.json", "", [], b""), LambdaContext())
    assert answer["statusCode"] == 200
    assert answer["headers"]["Content-Type"] == "application/json"
    body: str = answer["body"]
    return body.encode()


def check(name: str, actual: bytes) -> None:
    path = SNAPSHOTS / name
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_bytes(actual)
    assert path.exists(), f"{path} is missing; HATCHWAY_UPDATE_SNAPSHOTS=1 writes it (module docstring)"
    expected = path.read_bytes()
    if actual != expected:
        raise AssertionError(f"the API changed ({name}):\n" + difference(name, expected, actual))


def difference(name: str, expected: bytes, actual: bytes) -> str:
    """The changed lines (a JSON document is one line: its indented form is compared instead)."""

    def lines(data: bytes) -> list[str]:
        if name.endswith(".json"):
            try:
                return json.dumps(json.loads(data), indent=1, ensure_ascii=False).splitlines()
            except ValueError:
                pass
        return data.decode(errors="replace").splitlines()

    diff = list(difflib.unified_diff(lines(expected), lines(actual), "frozen", "now", lineterm=""))
    # equal once indented: only the bytes differ (key order, spacing, escapes)
    return "\n".join(diff[:200]) or "the same document, other bytes (key order, spacing or escapes)"


def test_the_route_table_is_unchanged(services: Services) -> None:
    check("routes.txt", route_table(create_app(services)).encode())


def test_the_openapi_document_is_unchanged_to_the_byte(services: Services) -> None:
    check("openapi.json", openapi_bytes(create_app(services)))
