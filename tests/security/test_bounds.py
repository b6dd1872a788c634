"""Bounded inputs against a real `hatchway serve` with default settings (issue 15, part 2).

Every limit refuses a request just over it with a 422 in the API's error shape before anything is
encrypted, stored or run, and accepts one at it; each is a setting an operator can move. A
maximal secret is redacted within the sync call's deadline while /health keeps answering.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.functional.actions import BEHAVE, behave
from tests.helpers import ADMIN_TOKEN, LiveServer

KIB = 1024
PROJECT = "/v1/projects/proj_local"
SYNC = f"{PROJECT}/actions/anything/sync/check"
#: an action that takes any parameters (a JSON Schema without constraints) and echoes them
ANYTHING = {
    "name": "anything",
    "parameters_schema": {"type": "object"},
    "sync_actions": ["check"],
    "container_parameters": {"entry_point": [sys.executable], "command": [BEHAVE]},
}
#: raised (or, for path names, lowered: files on disk have names of at most 255 bytes) limits
MOVED = {
    "HATCHWAY_MAX_PARAMETERS": "300",
    "HATCHWAY_MAX_PARAMETER_BYTES": str(512 * KIB),
    "HATCHWAY_MAX_SECRET_BYTES": str(128 * KIB),
    "HATCHWAY_MAX_SECRETS_BYTES": str(512 * KIB),
    "HATCHWAY_MAX_JSON_DEPTH": "100",
    "HATCHWAY_MAX_PATH_COMPONENT_BYTES": "32",
}


def start(home: Path, **env: str) -> LiveServer:
    server = LiveServer(home, **env).start()
    with server.client() as hw:
        hw.register_action(behave())
        hw.register_action(ANYTHING)
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start(tmp_path_factory.mktemp("bounds") / "home")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start(tmp_path_factory.mktemp("moved") / "home", **MOVED)
    yield live
    live.stop()


def call(server: LiveServer, method: str, path: str, body: Any = None, raw: bytes | None = None) -> httpx.Response:
    content = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"}
    return httpx.request(method, server.url + path, content=content, headers=headers, timeout=60)


def nested(depth: int) -> Any:
    """A value that is ``depth`` levels of objects and arrays deep."""
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def runs(server: LiveServer) -> int:
    with server.client() as hw:
        return len(hw.list_runs(limit=500)["items"])


def secrets(count: int, size: int) -> dict[str, str]:
    return {f"#s{index}": chr(ord("a") + index) * size for index in range(count)}


#: (name, request over the default limit, the same at the limit, the refusal's loc and type)
Case = tuple[str, Callable[[], tuple[str, str, Any]], Callable[[], tuple[str, str, Any]], list[Any], str]
CASES: list[Case] = [
    (
        "parameter value",
        lambda: ("POST", SYNC, {"parameters": {"v": "x" * (256 * KIB + 1)}}),
        lambda: ("POST", SYNC, {"parameters": {"v": "x" * (256 * KIB)}}),
        ["body", "parameters", "v"],
        "value_too_long",
    ),
    (
        "secret",
        lambda: ("POST", SYNC, {"parameters": {"#s": "é" * (32 * KIB) + "x"}}),  # bytes, not characters
        lambda: ("POST", SYNC, {"parameters": {"#s": "é" * (32 * KIB)}}),
        ["body", "parameters", "#s"],
        "secret_too_long",
    ),
    (
        "secrets together",
        lambda: ("POST", SYNC, {"parameters": {**secrets(4, 64 * KIB), "n": {"#deep": "y" * 4}}}),
        lambda: ("POST", SYNC, {"parameters": secrets(4, 64 * KIB)}),
        ["body", "parameters", "n", "#deep"],
        "secrets_too_long",
    ),
    (
        "number of parameters",
        lambda: ("POST", SYNC, {"parameters": {f"p{i}": i for i in range(129)}}),
        lambda: ("POST", SYNC, {"parameters": {f"p{i}": i for i in range(128)}}),
        ["body", "parameters"],
        "too_many_parameters",
    ),
    (
        "JSON nesting",
        lambda: ("POST", SYNC, {"parameters": {"n": nested(63)}}),  # 2 + 63 levels
        lambda: ("POST", SYNC, {"parameters": {"n": nested(62)}}),
        ["body"],
        "too_deep",
    ),
    (
        "path name",
        lambda: ("PUT", f"{PROJECT}/files/dir/{'n' * 256}", None),
        lambda: ("PUT", f"{PROJECT}/files/dir/{'n' * 255}", None),
        ["path"],
        "too_long",
    ),
    (
        "secret to encrypt",
        lambda: ("POST", f"{PROJECT}/encrypt", {"values": {"a": "ok-value", "b": "z" * (64 * KIB + 1)}}),
        lambda: ("POST", f"{PROJECT}/encrypt", {"values": {"a": "ok-value", "b": "z" * (64 * KIB)}}),
        ["body", "values", "b"],
        "secret_too_long",
    ),
]


@pytest.mark.parametrize(("name", "over", "at", "loc", "kind"), CASES, ids=[case[0] for case in CASES])
def test_a_request_over_a_limit_is_refused_in_the_error_shape_and_runs_nothing(
    server: LiveServer, name: str, over: Any, at: Any, loc: list[Any], kind: str
) -> None:
    # Given a gateway with default settings, When a request is just over the limit
    before = runs(server)
    method, path, body = over()
    refused = call(server, method, path, body)
    # Then it is a 422 in the one error shape, pointing at what is too large
    assert refused.status_code == 422, refused.text
    answer = refused.json()
    assert answer["status"] == "error" and answer["error"] == "Validation error" and answer["code"] == 422
    assert answer["details"][0]["loc"] == loc and answer["details"][0]["type"] == kind
    assert "x" * 64 not in refused.text and "a" * 64 not in refused.text  # no value is echoed
    # And nothing ran or was recorded
    assert runs(server) == before
    # While the same request at the limit is accepted
    method, path, body = at()
    accepted = call(server, method, path, body)
    assert accepted.status_code in (200, 201), accepted.text


def test_a_body_nested_a_million_levels_deep_is_refused_on_any_route(server: LiveServer) -> None:
    deep = b'{"parameters": {"n": ' + b"[" * 1_000_000 + b"]" * 1_000_000 + b"}}"
    for path in (SYNC, f"{PROJECT}/actions/behave/runs", f"{PROJECT}/actions"):
        refused = call(server, "POST", path, raw=deep)
        assert refused.status_code == 422, refused.text
        assert refused.json()["details"] == [
            {"loc": ["body"], "msg": "the JSON body nests deeper than 64 levels", "type": "too_deep"}
        ]
    # brackets inside strings are text, not nesting
    assert call(server, "POST", SYNC, {"parameters": {"v": "[" * 1000}}).status_code == 200


def test_the_issues_one_megabyte_secret_is_refused(server: LiveServer) -> None:
    refused = call(server, "POST", SYNC, {"parameters": {"#s": "A" * 1_000_000}})
    assert refused.status_code == 422 and refused.json()["details"][0]["type"] == "secret_too_long"
    assert "AAAA" not in refused.text


def test_every_limit_is_a_setting(moved: LiveServer) -> None:
    # Given a gateway whose limits were moved, When the requests refused by default come again
    for name, over, _, loc, _ in CASES:
        method, path, body = over()
        answer = call(moved, method, path, body)
        if name == "path name":
            # Then the lowered limit refuses a name the default allowed
            assert answer.status_code == 422 and answer.json()["details"][0]["loc"] == loc
            assert call(moved, "PUT", f"{PROJECT}/files/{'n' * 32}", None).status_code == 201
        else:
            # Then the raised limits accept them
            assert answer.status_code in (200, 201), (name, answer.text)
    assert call(moved, "POST", SYNC, {"parameters": {"n": nested(98)}}).status_code == 200
    assert call(moved, "POST", SYNC, {"parameters": {"n": nested(99)}}).status_code == 422


def test_a_maximal_secret_is_redacted_within_the_deadline_while_health_answers(server: LiveServer) -> None:
    # Given a 64 KiB secret (the default limit) that the action prints raw, base64, JSON-escaped,
    # URL-encoded (three times its size), split across writes, and answers twice
    secret = "".join(chr(ord("A") + (i * 7) % 26) if i % 5 else "/" for i in range(64 * KIB))
    health: list[int] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=10) as http:
            while not done.is_set():
                health.append(http.get(server.url + "/health").status_code)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        # When a sync action prints it
        answer = call(server, "POST", f"{PROJECT}/actions/behave/sync/check",
                      {"parameters": {"behaviour": "print_secret", "#secret": secret}})  # fmt: skip
        polled_during_the_call = len(health)
    finally:
        done.set()
        poller.join()
    # Then the call answers (within its deadline: not a 504) with every spelling hidden
    assert answer.status_code == 200, answer.text[:500]
    body = answer.json()
    assert body["ret"] == {"secret": "[hidden]", "nested": ["[hidden]"]}
    messages = [entry["msg"] for entry in body["os"]]
    for prefix in ("raw", "b64", "json", "url", "split", "stderr"):
        assert any(m.startswith(prefix) and "[hidden]" in m for m in messages), prefix
    text = answer.text
    for form in (secret, base64.b64encode(secret.encode()).decode(), quote(secret, safe=""), secret[:64]):
        assert form[:64] not in text
    # And /health answered all along
    assert polled_during_the_call > 0 and set(health) == {200}


def test_limits_that_cannot_work_are_refused_at_start() -> None:
    from hatchway.config import Settings
    from hatchway.errors import ValidationFailed

    for env in ({"HATCHWAY_MAX_JSON_DEPTH": "1000"}, {"HATCHWAY_MAX_JSON_DEPTH": "2"},
                {"HATCHWAY_MAX_PATH_COMPONENT_BYTES": "256"}, {"HATCHWAY_MAX_SECRET_BYTES": "0"}):  # fmt: skip
        with pytest.raises(ValidationFailed) as refused:
            Settings.from_env(env)
        assert refused.value.details[0]["loc"] == ["env", next(iter(env))]
    assert Settings.from_env({"HATCHWAY_BACKEND": "aws", "HATCHWAY_MAX_PATH_COMPONENT_BYTES": "1024"})


def test_a_ciphertext_is_measured_by_the_plaintext_it_holds(tmp_path: Path) -> None:
    from hatchway.domain.parameters import secret_bytes
    from hatchway.secrets.box import local_secret_box

    box = local_secret_box(tmp_path / "secret.key")
    for size in (4, 1000, 64 * KIB, 64 * KIB + 2048, 256 * KIB):
        ciphertext = box.encrypt("s" * size, "proj_x", "development")
        # never more than the plaintext (a maximal secret's ciphertext is accepted), and close to it
        assert size - 1100 <= secret_bytes(ciphertext) <= size, size
