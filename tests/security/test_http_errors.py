"""Issue 15, part 5: every failure a client can provoke is an answer in the API's error shape.

A real ``hatchway serve`` (default settings) gets the inputs that answered plain-text 500s, and
more of their kind: each answer >= 400 is ``{"status": "error", "code", "message", ...}`` with an
``exceptionId`` when it is a 5xx, nothing is left behind, and 204 answers carry no content.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.functional.actions import behave
from tests.helpers import ADMIN_TOKEN, LiveServer, wait_until

P = "/v1/projects/proj_local"
DEEP_ARRAY = "[" * 10_000 + "]" * 10_000
DEEP_OBJECT = '{"a":' * 10_000 + "1" + "}" * 10_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("errors") / "home").start()
    with live.client() as hw:
        hw.register_action(behave())
    yield live
    live.kill()


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60) as client:
        yield client


def assert_error_shape(answer: httpx.Response, code: int | None = None) -> dict[str, Any]:
    """The API's one error shape; a 5xx names an exceptionId; nothing of the server's insides."""
    assert answer.headers["content-type"] == "application/json", answer.text[:300]
    body: dict[str, Any] = answer.json()
    assert body["status"] == "error" and body["code"] == answer.status_code and body["message"], body
    if code is not None:
        assert answer.status_code == code, body
    if answer.status_code >= 500:
        assert body["exceptionId"].startswith("exc_"), body
    for leak in ("Traceback", "/tmp/", "/work/", "Errno", "site-packages"):
        assert leak not in answer.text, answer.text
    return body


def uploads_left(server: LiveServer) -> list[str]:
    return sorted(p.name for p in (server.home / "blobs").glob(".upload-*"))


# ---- files: names the file system refuses, a file where a directory must be ----------------------


@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE"])
def test_a_path_segment_longer_than_a_file_name_can_be_is_a_422(http: httpx.Client, method: str) -> None:
    answer = http.request(method, f"{P}/files/{'a' * 300}/b.txt", content=b"data")
    body = assert_error_shape(answer, 422)
    assert "255" in body["message"]


@pytest.mark.parametrize(
    ("first", "second"),
    [("k1", "k1/k2"), ("d1/d2", "d1")],
    ids=["file-then-file-below-it", "file-then-its-directory"],
)
def test_a_file_and_a_directory_on_one_path_is_a_409_that_leaves_nothing_behind(
    http: httpx.Client, server: LiveServer, first: str, second: str
) -> None:
    # Given a stored file
    assert http.put(f"{P}/files/{first}", content=b"one").status_code == 201
    # When a second file needs its path as a directory (or the other way round)
    answer = http.put(f"{P}/files/{second}", content=b"two")
    # Then it is a conflict in the error shape, the first file is intact, and no upload is left over
    assert "cannot store" in assert_error_shape(answer, 409)["message"]
    assert http.get(f"{P}/files/{first}").content == b"one"
    assert uploads_left(server) == []


def test_temporary_uploads_a_dead_gateway_left_are_removed_at_start(tmp_path: Path) -> None:
    # Given a home whose blob directory holds an upload its writer never finished, and a fresh one
    blobs = tmp_path / "home" / "blobs"
    blobs.mkdir(parents=True)
    stale, fresh = blobs / ".upload-dead1234", blobs / ".upload-live5678"
    stale.write_bytes(b"half a file")
    fresh.write_bytes(b"being written")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    # When a gateway starts on it
    live = LiveServer(tmp_path / "home").start()
    try:
        # Then the stale one is gone; one another process may still be writing is not touched
        assert not stale.exists() and fresh.exists()
    finally:
        live.kill()


# ---- bodies: nested too deeply, surrogates, tampered ciphertexts --------------------------------


DEEP_BODIES = {
    "array": DEEP_ARRAY,
    "object": DEEP_OBJECT,
    "in-parameters": '{"parameters": ' + DEEP_OBJECT + "}",
    "in-a-list": '{"parameters": {"a": ' + DEEP_ARRAY + "}}",
}
JSON_ROUTES = [
    ("POST", f"{P}/actions/behave/runs"),  # answered directly (api/fastpath.py)
    ("POST", f"{P}/actions/behave/sync/check"),  # answered directly too
    ("POST", f"{P}/actions"),
    ("POST", f"{P}/encrypt"),
    ("POST", f"{P}/actions/behave/action/check"),
    ("PUT", f"{P}/pipelines/deep"),
    ("POST", "/v1/connect/proj_local/actions/run"),
    ("POST", "/v1/projects"),
]


@pytest.mark.parametrize("body", DEEP_BODIES.values(), ids=DEEP_BODIES.keys())
@pytest.mark.parametrize(("method", "path"), JSON_ROUTES, ids=[f"{m} {p}" for m, p in JSON_ROUTES])
def test_a_body_nested_ten_thousand_deep_is_a_client_error(
    http: httpx.Client, method: str, path: str, body: str
) -> None:
    answer = http.request(method, path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code in (400, 422), answer.text[:300]
    assert_error_shape(answer)


@pytest.mark.parametrize(
    "text",
    ['"\\ud800"', '"\\udfff"', '"x\\ud83d"', '"\\\\\\ud800"'],
    ids=["high", "low", "unpaired", "after-backslash"],
)
@pytest.mark.parametrize("where", ["encrypt", "parameter", "secret"])
def test_half_a_surrogate_pair_is_a_422(http: httpx.Client, text: str, where: str) -> None:
    method, path, body = {
        "encrypt": ("POST", f"{P}/encrypt", '{"value": ' + text + "}"),
        "parameter": ("POST", f"{P}/actions/behave/sync/check", '{"parameters": {"who": ' + text + "}}"),
        "secret": ("POST", f"{P}/actions/behave/runs", '{"parameters": {"#secret": ' + text + "}}"),
    }[where]
    answer = http.request(method, path, content=body, headers={"content-type": "application/json"})
    assert "surrogate" in assert_error_shape(answer, 422)["message"]


def test_a_whole_surrogate_pair_and_an_escaped_backslash_are_fine(http: httpx.Client) -> None:
    answer = http.post(f"{P}/encrypt", content='{"value": "\\ud83d\\ude00 and \\\\ud800"}')
    assert answer.status_code == 200, answer.text


def tamper(ciphertext: str, at: int) -> str:
    return ciphertext[:at] + ("A" if ciphertext[at] != "A" else "B") + ciphertext[at + 1 :]


@pytest.mark.parametrize("at", [-5, -40, 40, 100], ids=["tag", "body", "header", "key"])
def test_a_tampered_ciphertext_is_a_user_error(http: httpx.Client, at: int) -> None:
    ciphertext = http.post(f"{P}/encrypt", json={"value": "s3cret-value"}).json()["ciphertext"]
    bad = tamper(ciphertext, at)
    # a sync call answers 400 at once
    answer = http.post(f"{P}/actions/behave/sync/check", json={"parameters": {"#secret": bad}})
    assert "ciphertext" in assert_error_shape(answer, 400)["message"]
    # a run is accepted, then fails as a user error (not an application error)
    run = http.post(f"{P}/actions/behave/runs", json={"parameters": {"#secret": bad}}).json()

    def ended() -> dict[str, Any]:
        now: dict[str, Any] = http.get(f"{P}/runs/{run['id']}").json()
        return now if now["status"] in ("SUCCESSFUL", "FAILED") else {}

    final = wait_until(ended, 30, 0.1, "the run to end")
    assert final["status"] == "FAILED" and final["error"]["kind"] == "user", final["error"]


# ---- answers: 204, cursors ------------------------------------------------------------------------


def test_no_content_answers_carry_no_content_type(http: httpx.Client) -> None:
    # Given one of each kind of deletable thing
    assert http.put(f"{P}/files/gone.txt", content=b"x").status_code == 201
    assert http.put(f"{P}/caches/gone", json={"ttl_seconds": 60}).status_code == 200
    token = http.post(f"{P}/tokens", json={"scopes": ["runs:read"]}).json()
    http.post(f"{P}/actions", json=behave(name="gone"))
    deletions = [f"{P}/files/gone.txt", f"{P}/caches/gone", f"{P}/tokens/{token['id']}", f"{P}/actions/gone"]
    for path in deletions:
        # When it is deleted
        answer = http.delete(path)
        # Then the answer is a bare 204
        assert answer.status_code == 204, (path, answer.text)
        assert "content-type" not in answer.headers and answer.content == b"", (path, answer.headers)


def test_a_logs_next_works_as_a_cursor(http: httpx.Client) -> None:
    # Given a run with a longer log than one page
    run = http.post(f"{P}/actions/behave/runs", json={"parameters": {"behaviour": "lines", "count": "7"}}).json()
    wait_until(lambda: http.get(f"{P}/runs/{run['id']}").json()["status"] == "SUCCESSFUL", 30, 0.1, "the run")
    # When its pages are read by following next as ?cursor=
    seen: list[int] = []
    query: dict[str, Any] = {"limit": 3}
    while True:
        page = http.get(f"{P}/runs/{run['id']}/logs", params=query)
        assert page.status_code == 200, page.text
        seen += [entry["seq"] for entry in page.json()["items"]]
        if page.json()["next"] is None:
            break
        query = {"limit": 3, "cursor": page.json()["next"]}
    # Then every entry came once, in order (?after= still works the same)
    assert seen == list(range(1, len(seen) + 1)) and len(seen) >= 8
    assert http.get(f"{P}/runs/{run['id']}/logs", params={"after": 3}).json()["items"][0]["seq"] == 4
    assert_error_shape(http.get(f"{P}/runs/{run['id']}/logs", params={"cursor": "abc"}), 422)


# ---- below the API: what the HTTP server itself answers -------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"GARBAGE\r\n\r\n", b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n"],
    ids=["no-request-line", "header-without-colon", "unknown-version"],
)
def test_a_request_that_is_not_http_gets_a_400_in_the_error_shape(server: LiveServer, raw: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer
    assert b"content-type: application/json" in head.lower(), head
    parsed = json.loads(body)
    assert parsed["status"] == "error" and parsed["code"] == 400, parsed


def test_the_server_log_has_no_unhandled_exception(server: LiveServer) -> None:
    # run last in this module: nothing above escaped to uvicorn's "Exception in ASGI application"
    assert "Exception in ASGI application" not in server.log()
