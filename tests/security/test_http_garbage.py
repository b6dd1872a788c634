"""Issue 15, part 5: garbage sent to every documented route is answered in the error shape.

In-process (the resolver behind the same events the server builds): every operation of the
published OpenAPI document gets bodies that are not JSON, not UTF-8, nested thousands deep, with
half a surrogate pair, of the wrong type; path values too long for a file name or with a NUL;
query values out of range. No answer is a 5xx, and every answer >= 400 is in the shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from hatchway.client import Client
from hatchway.services import Services
from tests.conftest import inprocess_client
from tests.functional.actions import behave

DEEP = b"[" * 5000 + b"]" * 5000
BODIES: list[bytes | None] = [
    None,
    b"{",
    b"\xff\xfe\x00",
    DEEP,
    b'{"parameters": ' + b'{"a":' * 5000 + b"1" + b"}" * 5001,
    b'{"value": "\\ud800", "parameters": {"#p": "\\udc00"}}',
    b"[]",
    b'"text"',
    b'{"parameters": {"a": 1e999}, "limit": -1}',
    b'{"parameters": {"#p": "hwenc:v1:AAAA"}}',
]
PATH_VALUES = ["x", "a" * 300, "%00", "..%2F..", "\u00e9"]
QUERIES = ["limit=0", "limit=99999999999999999999", "cursor=@@@", "after=-1", "version=abc", "x=1"]


@pytest.fixture
def admin(services: Services) -> Iterator[Client]:
    with inprocess_client(services) as hw:
        hw.register_action(behave())
        yield hw


def operations(admin: Client) -> list[tuple[str, str]]:
    document = admin._http.get("/openapi.json").json()
    return [(method.upper(), path) for path, ops in document["paths"].items() for method in ops]


def check(answer: Any, what: tuple[Any, ...]) -> None:
    assert answer.status_code < 500, (what, answer.status_code, answer.text[:300])
    if answer.status_code >= 400:
        body = answer.json()
        assert body["status"] == "error" and body["code"] == answer.status_code and body["message"], (what, body)


def test_garbage_to_every_route_stays_in_the_error_shape(admin: Client) -> None:
    found = operations(admin)
    assert len(found) >= 45
    for method, path in found:
        for value in PATH_VALUES:
            url = re.sub(r"\{(\w+)\}", lambda m: "proj_local" if m.group(1) == "project_id" else value, path)  # noqa: B023
            for body in BODIES:
                answer = admin._http.request(method, url, content=body, headers={"content-type": "application/json"})
                check(answer, (method, url, body[:30] if body else body))
            for query in QUERIES:
                check(admin._http.request(method, f"{url}?{query}"), (method, url, query))
