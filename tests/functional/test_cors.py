"""CORS: a browser page on an allowed origin calls a sync action - through a real ``hatchway
serve`` and through the Lambda handler's API Gateway events; others get no CORS headers."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hatchway import wiring
from tests.awsmock import patched_env
from tests.helpers import ADMIN_TOKEN, REPO, LiveServer

APP = "https://app.example.com"
GREET = {
    "name": "greet",
    "sync_actions": ["hello"],
    "container_parameters": {
        "entry_point": [sys.executable, "-c"],
        "command": ["import json; print(json.dumps({'hi': 'there'}))"],
    },
}
SYNC = "/v1/projects/proj_local/actions/greet/sync/hello"


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-hatchway-environment",
    }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path / "home", HATCHWAY_CORS_ORIGINS=f"{APP}, http://localhost:5173").start()
    yield live
    live.stop()


def test_a_page_on_an_allowed_origin_calls_a_sync_action_on_a_live_server(server: LiveServer) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    httpx.post(server.url + "/v1/projects/proj_local/actions", json=GREET, headers=auth).raise_for_status()
    # When the browser sends its preflight (no token)
    pre = httpx.options(server.url + SYNC, headers=preflight_headers(APP))
    # Then it is answered without authentication, for this origin only
    assert pre.status_code == 204, pre.text
    assert pre.headers["access-control-allow-origin"] == APP
    assert "POST" in pre.headers["access-control-allow-methods"]
    allowed_headers = pre.headers["access-control-allow-headers"].lower()
    assert all(h in allowed_headers for h in ("authorization", "content-type", "x-hatchway-environment"))
    assert "origin" in pre.headers["vary"].lower()
    # When the page makes the call itself
    call = httpx.post(server.url + SYNC, json={"parameters": {}}, headers={**auth, "Origin": APP})
    # Then the answer is readable by the page
    assert call.status_code == 200 and call.json()["ret"] == {"hi": "there"}
    assert call.headers["access-control-allow-origin"] == APP
    assert "retry-after" in call.headers["access-control-expose-headers"].lower()
    # and so is a refusal decided before any route (no token)
    refused = httpx.post(server.url + SYNC, json={"parameters": {}}, headers={"Origin": APP})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == APP
    # and a page on another origin gets no CORS header, so its browser keeps the answer from it
    stranger = httpx.options(server.url + SYNC, headers=preflight_headers("https://evil.example.net"))
    assert "access-control-allow-origin" not in stranger.headers
    other = httpx.post(
        server.url + SYNC, json={"parameters": {}}, headers={**auth, "Origin": "https://evil.example.net"}
    )
    assert "access-control-allow-origin" not in other.headers


def test_without_origins_configured_nothing_changes(tmp_path: Path) -> None:
    live = LiveServer(tmp_path / "home").start()
    try:
        pre = httpx.options(live.url + SYNC, headers=preflight_headers(APP))
        # as before: an OPTIONS request is a request like any other (no token: 401), no CORS headers
        assert pre.status_code == 401 and "access-control-allow-origin" not in pre.headers
    finally:
        live.stop()


def event(method: str, path: str, headers: dict[str, str], body: Any = None) -> dict[str, Any]:
    sample: dict[str, Any] = json.loads((REPO / "events" / "ApiFunction" / "sync-call.json").read_text())
    made = copy.deepcopy(sample)
    made["rawPath"] = made["requestContext"]["http"]["path"] = path
    made["requestContext"]["http"]["method"] = method
    made["headers"] = {k: v for k, v in made["headers"].items() if k not in ("authorization", "content-type")}
    made["headers"].update({k.lower(): v for k, v in headers.items()})
    made["body"] = json.dumps(body) if body is not None else None
    return made


def test_the_lambda_handler_answers_a_preflight_and_a_cross_origin_sync_call(tmp_path: Path) -> None:
    token = "lambda-admin-token"  # noqa: S105 - a test's bootstrap token
    env = {"HATCHWAY_HOME": str(tmp_path / "home"), "HATCHWAY_BOOTSTRAP_TOKEN": token,
           "HATCHWAY_EXECUTOR": "process", "HATCHWAY_CORS_ORIGINS": APP, "HATCHWAY_METRICS": "off"}  # fmt: skip
    with patched_env(env):
        wiring.lambda_services.cache_clear()
        try:
            wiring.bootstrap(wiring.lambda_services())  # the project a deployment's bootstrap makes
            handler = wiring.api_handler()
            auth = {"authorization": f"Bearer {token}", "content-type": "application/json"}
            registered = handler(event("POST", "/v1/projects/proj_local/actions", auth, GREET), None)
            assert registered["statusCode"] in (200, 201), registered["body"]
            # When API Gateway hands the function a preflight
            pre = handler(event("OPTIONS", SYNC, preflight_headers(APP)), None)
            # Then it answers it without a token
            assert pre["statusCode"] == 204 and pre["headers"]["Access-Control-Allow-Origin"] == APP
            # and the cross-origin call itself carries the header the browser needs
            call = handler(event("POST", SYNC, {**auth, "origin": APP}, {"parameters": {}}), None)
            assert call["statusCode"] == 200 and json.loads(call["body"])["ret"] == {"hi": "there"}
            assert call["headers"]["Access-Control-Allow-Origin"] == APP
        finally:
            wiring.lambda_services().close()
            wiring.lambda_services.cache_clear()
