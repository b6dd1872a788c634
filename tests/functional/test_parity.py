"""What users bring from other platforms runs unchanged: Keboola components, Roboto actions,
Pipedream-style stashes, Ductape-style input, HTTP actions, cache tags, sessions and callbacks.

These run in-process against real processes with the real libraries (keboola.component, roboto).
Real SDK clients against a real server are in tests/integration/test_clients.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest

from hatchway.client import (
    Client,
    NotFoundResponse,
    UnauthorizedResponse,
    UserErrorResponse,
    ValidationErrorResponse,
)
from hatchway.domain.spec import resolve_local_paths
from hatchway.services import Services
from hatchway.wiring import bootstrap, build_services
from hatchway.worker import WorkerPool
from tests.conftest import inprocess_client, make_settings
from tests.helpers import REPO, wait_until

COMPAT = REPO / "examples" / "compat"


def example(name: str) -> dict[str, Any]:
    folder = COMPAT / name
    document: dict[str, Any] = resolve_local_paths(json.loads((folder / "action.json").read_text()), folder)
    return document


# ---- a local HTTP server for HTTP actions and callbacks ---------------------------------------


class Recorder(BaseHTTPRequestHandler):
    calls: list[dict[str, Any]] = []
    plan: list[tuple[int, dict[str, str], bytes]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        Recorder.calls.append(
            {"method": self.command, "path": self.path, "headers": headers, "body": body, "at": time.monotonic()}
        )
        status, headers, payload = Recorder.plan.pop(0) if Recorder.plan else (200, {}, b'{"ok": true}')
        self.send_response(status)
        self.send_header("content-type", headers.pop("content-type", "application/json"))
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    Recorder.calls, Recorder.plan = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def open_services(tmp_path: Path) -> Iterator[Services]:
    """A gateway whose HTTP actions and callbacks may reach loopback (the test's upstream)."""
    services = build_services(make_settings(tmp_path / "home", http_allow=("loopback",)), pool=True)
    bootstrap(services)
    pool = WorkerPool(services, size=2)
    pool.start()
    yield services
    pool.stop(2)
    services.close()


@pytest.fixture
def hw_open(open_services: Services) -> Iterator[Client]:
    with inprocess_client(open_services) as client:
        yield client


# ---- Keboola -------------------------------------------------------------------------------------

# relative to the component's own folder: a sandboxed action sees its own files, not the caller's
KEBOOLA_PARAMS = {"db": {"path": "sample.db", "#password": "letmein"}, "table": "orders"}


def test_keboola_component_sync_actions_and_run(client: Client) -> None:
    client.register_action(example("keboola-component"))
    # Given an unmodified keboola.component component, its camelCase sync actions answer
    assert client.call_sync("keboola-extractor", "testConnection", KEBOOLA_PARAMS)["ret"] == {
        "message": "Connection OK",
        "type": "info",
        "status": "success",
    }
    tables = client.call_sync("keboola-extractor", "listTables", KEBOOLA_PARAMS)["ret"]
    assert tables == [{"value": "customers", "label": "customers"}, {"value": "orders", "label": "orders"}]
    # and the Keboola-shaped call answers the action's JSON unwrapped
    answer = client._http.post(
        f"/v1/projects/{client.project}/actions/keboola-extractor/action/testConnection",
        json={"configData": {"parameters": KEBOOLA_PARAMS, "runtime": {"safe": True}}},
    )
    assert answer.status_code == 200 and answer.json()["message"] == "Connection OK"
    # a UserException is a user error with the component's message
    wrong = {"db": {"path": "sample.db", "#password": "nope"}}
    refused = client._http.post(
        f"/v1/projects/{client.project}/actions/keboola-extractor/action/testConnection",
        json={"configData": {"parameters": wrong}},
    )
    assert refused.status_code == 400 and "wrong database password" in refused.json()["message"]
    assert "nope" not in refused.text
    # the run writes its table; it becomes an artifact
    run = client.wait(client.start_run("keboola-extractor", KEBOOLA_PARAMS)["id"], timeout=60)
    assert run["status"] == "SUCCESSFUL", run
    assert run["parameters"]["db"]["#password"] == "[hidden]"
    artifacts = client.request("GET", f"/v1/projects/{client.project}/runs/{run['id']}/artifacts")["items"]
    assert [a["path"] for a in artifacts] == ["tables/orders.csv"]
    csv = client._http.get(f"/v1/projects/{client.project}/runs/{run['id']}/artifacts/tables/orders.csv")
    assert csv.status_code == 200 and csv.content.splitlines()[0] == b"id,customer_id,total,placed"
    assert len(csv.content.splitlines()) == 26


def test_parameters_schema_validates_with_the_failing_path(client: Client) -> None:
    client.register_action(example("keboola-component"))
    with pytest.raises(ValidationErrorResponse) as caught:
        client.call_sync("keboola-extractor", "testConnection", {"db": {"path": 7, "#password": "secret-pw"}})
    assert caught.value.details[0]["loc"] == ["body", "parameters", "db", "path"]
    assert "secret-pw" not in json.dumps(caught.value.body)
    # a value of the wrong type that holds a secret is refused without quoting it, on both routes
    wrong = {"db": [{"#password": "secret-pw"}]}
    for attempt in (lambda: client.call_sync("keboola-extractor", "testConnection", wrong),
                    lambda: client.start_run("keboola-extractor", wrong)):  # fmt: skip
        with pytest.raises(ValidationErrorResponse) as quoted:
            attempt()
        assert quoted.value.details[0]["loc"] == ["body", "parameters", "db"]
        assert "secret-pw" not in json.dumps(quoted.value.body)
    # a sync action may be called with a form not yet complete; the run may not
    with pytest.raises(UserErrorResponse):
        client.call_sync("keboola-extractor", "testConnection", {"db": {"path": "sample.db"}})
    with pytest.raises(ValidationErrorResponse) as missing:
        client.start_run("keboola-extractor", {"db": {"path": "x"}})
    assert missing.value.details[0]["loc"] == ["body", "parameters", "db"]


def test_keboola_environment_and_config(client: Client, tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import json, os, sys\n"
        "config = json.load(open(os.environ['KBC_DATADIR'] + 'config.json'))\n"
        "keys = {k: os.environ[k] for k in ('KBC_RUNID', 'KBC_PROJECTID', 'KBC_COMPONENTID', 'KBC_CONFIGID')}\n"
        "print(json.dumps({'datadir_slash': os.environ['KBC_DATADIR'].endswith('/'), 'env': keys,\n"
        "  'nulls': [k for k, v in config.items() if v is None], 'runtime': config.get('runtime'),\n"
        "  'objects': {k: config[k] for k in ('image_parameters', 'storage', 'authorization')}}))\n"
    )
    client.register_action(
        {
            "name": "kbc-probe",
            "parameters_schema": {"type": "object"},
            "sync_actions": ["probe"],
            "container_parameters": {"entry_point": [sys.executable], "command": [str(probe)]},
        }
    )
    answer = client._http.post(
        f"/v1/projects/{client.project}/actions/kbc-probe/action/probe",
        json={"configData": {"parameters": {}, "runtime": {"backend": "x"}}},
    ).json()
    assert answer["datadir_slash"] is True and answer["nulls"] == []
    assert answer["runtime"] == {"backend": "x"}
    assert answer["objects"] == {"image_parameters": {}, "storage": {}, "authorization": {}}
    assert answer["env"]["KBC_PROJECTID"] == client.project and answer["env"]["KBC_COMPONENTID"] == "kbc-probe"
    assert answer["env"]["KBC_RUNID"].startswith("run_")


# ---- Roboto ----------------------------------------------------------------------------------


def test_roboto_action_reads_its_context_inputs_and_leaves_artifacts(client: Client) -> None:
    client.register_action(example("roboto-action"))
    for path, lines in (("logs/flight-1.log", 3), ("logs/flight-2.log", 12)):
        uploaded = client._http.put(
            f"/v1/projects/{client.project}/files/{path}", content=b"".join(b"line\n" for _ in range(lines))
        )
        assert uploaded.status_code == 201 and uploaded.json()["size"] == lines * 5
    listed = client.request("GET", f"/v1/projects/{client.project}/files")["items"]
    assert [f["path"] for f in listed] == ["logs/flight-1.log", "logs/flight-2.log"]
    run = client.request(
        "POST",
        f"/v1/projects/{client.project}/actions/roboto-line-count/runs",
        json={"parameters": {"threshold": 5, "label": "nightly"}, "inputs": ["logs/flight-1.log", "logs/flight-2.log"]},
    )
    final = client.wait(run["id"], timeout=60)
    assert final["status"] == "SUCCESSFUL", final
    assert final["ret"] == {
        "label": "nightly",
        "threshold": 5.0,
        "files": {"logs/flight-1.log": 3, "logs/flight-2.log": 12},
        "over": ["logs/flight-2.log"],
    }
    log_lines = [e["msg"] for e in client.logs(run["id"])["items"]]
    assert any(f"invocation {run['id']} in {client.project}" in line for line in log_lines)
    artifacts = client.request("GET", f"/v1/projects/{client.project}/runs/{run['id']}/artifacts")["items"]
    assert [a["path"] for a in artifacts] == ["files/nightly.json"]
    # a missing input is a clear 404 and nothing is queued
    with pytest.raises(NotFoundResponse):
        client.request(
            "POST",
            f"/v1/projects/{client.project}/actions/roboto-line-count/runs",
            json={"parameters": {"threshold": 5}, "inputs": ["logs/missing.log"]},
        )
    traversal = client._http.put(f"/v1/projects/{client.project}/files/../../etc/passwd", content=b"x")
    assert traversal.status_code in (404, 422)


def test_files_are_private_to_their_project(services: Services, client: Client) -> None:
    other = client.create_project("other")["id"]
    token = client.create_token(["runs:read", "runs:write"], project=other)["token"]
    stranger = inprocess_client(services, token, project=other)
    client._http.put(f"/v1/projects/{client.project}/files/private.txt", content=b"mine")
    assert stranger._http.get(f"/v1/projects/{client.project}/files/private.txt").status_code == 403
    assert stranger._http.get(f"/v1/projects/{other}/files/private.txt").status_code == 404
    assert client._http.delete(f"/v1/projects/{client.project}/files/private.txt").status_code == 204
    assert client._http.get(f"/v1/projects/{client.project}/files/private.txt").status_code == 404


# ---- Pipedream-style stash (the real SDKs are in the integration tier) --------------------------


def test_a_stash_carries_files_between_calls(client: Client) -> None:
    client.register_action(example("pipedream-action"))
    connect = f"/v1/connect/{client.project}/actions/run"
    first = client.request(
        "POST", connect, json={"id": "greet-user", "external_user_id": "u-1", "configured_props": {}, "stash_id": "NEW"}
    )
    assert first["ret"]["count"] == 1 and first["exports"] == {"count": 1} and first["stash_id"].startswith("stash_")
    assert all(set(e) >= {"k", "ts", "msg"} and "seq" not in e for e in first["os"])
    second = client.request(
        "POST", connect, json={"id": "greet-user", "external_user_id": "u-1", "stash_id": first["stash_id"],
                               "configured_props": {"name": "ada"}},
    )  # fmt: skip
    assert second["ret"]["count"] == 2 and second["stash_id"] == first["stash_id"]
    assert second["ret"]["greeting"] == "hello, ada"
    with pytest.raises(NotFoundResponse):
        client.request("POST", connect, json={"id": "greet-user", "external_user_id": "u-1", "stash_id": "stash_nope"})
    runs = client.list_runs(external_user_id="u-1")["items"]
    assert len(runs) == 2 and {r["external_user_id"] for r in runs} == {"u-1"}


def test_a_repeated_connect_call_runs_again_unless_it_carries_the_same_idempotency_key(client: Client) -> None:
    client.register_action(example("pipedream-action"))
    connect = f"/v1/connect/{client.project}/actions/run"
    stash = client.request(
        "POST", connect, json={"id": "greet-user", "external_user_id": "u-3", "configured_props": {}, "stash_id": "NEW"}
    )["stash_id"]
    body = {"id": "greet-user", "external_user_id": "u-3", "configured_props": {}, "stash_id": stash}
    # When the very same request is sent twice after a success (an SDK never retries a success)
    counts = [client.request("POST", connect, json=body)["ret"]["count"] for _ in range(2)]
    # Then the action ran each time
    assert counts == [2, 3]
    # And with an Idempotency-Key, a repeat is answered from the first answer without running
    keyed = [
        client.request("POST", connect, json=body, headers={"Idempotency-Key": "k-1"})["ret"]["count"] for _ in range(2)
    ]
    assert keyed == [4, 4]
    assert len(client.list_runs(external_user_id="u-3")["items"]) == 4


def test_connect_versions(client: Client) -> None:
    client.register_action(example("pipedream-action"))
    connect = f"/v1/connect/{client.project}/actions/run"
    body = {"id": "greet-user", "external_user_id": "u-2"}
    assert client.request("POST", connect, json={**body, "version": "1.0.0"})["ret"]["count"] == 1
    assert client.request("POST", connect, json={**body, "version": "1", "configured_props": {"name": "x"}})
    with pytest.raises(NotFoundResponse):
        client.request("POST", connect, json={**body, "version": "9.9.9"})


# ---- Ductape-style input and HTTP actions ------------------------------------------------------


def test_input_reaches_the_action(client: Client, tmp_path: Path) -> None:
    echo = tmp_path / "echo.py"
    echo.write_text(
        "import json, os\n"
        "config = json.load(open(os.environ['HATCHWAY_DATA_DIR'] + '/config.json'))\n"
        "print(json.dumps(config['input']))\n"
    )
    client.register_action(
        {
            "name": "echo-input",
            "sync_actions": ["show"],
            "container_parameters": {"entry_point": [sys.executable], "command": [str(echo)]},
        }
    )
    given = {
        "body": {"email": "ada@example.com"},
        "query": {"limit": 10},
        "params": {"id": "c1"},
        "headers": {"X-Id": "r1"},
    }
    answer = client.request(
        "POST", f"/v1/projects/{client.project}/actions/echo-input/sync/show", json={"input": given}
    )
    assert answer["ret"] == given


def http_action(url: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": "get-customer",
        "parameters": [{"name": "#api_key"}],
        "sync_actions": ["call"],
        "http": {
            "method": "GET",
            "url": url + "/v1/customers/{params.customerId}",
            "headers": {"Authorization": "Bearer {parameters.#api_key}"},
            "query": {"expand": "{query.expand}"},
            **fields,
        },
    }


def test_http_action_fills_templates_and_retries(hw_open: Client, upstream: str) -> None:
    hw_open.register_action(http_action(upstream))
    Recorder.plan = [(429, {"retry-after": "0"}, b"{}"), (200, {}, b'{"id": "c/1", "name": "Ada"}')]
    answer = hw_open.request(
        "POST",
        f"/v1/projects/{hw_open.project}/actions/get-customer/sync/call",
        json={"parameters": {"#api_key": "k3y-VALUE-123"}, "input": {"params": {"customerId": "c/1"},
              "query": {"expand": "orders"}}, "retries": 2},
    )  # fmt: skip
    assert answer["ret"]["status"] == 200 and answer["ret"]["body"] == {"id": "c/1", "name": "Ada"}
    assert len(Recorder.calls) == 2
    call = Recorder.calls[-1]
    assert call["path"] == "/v1/customers/c%2F1?expand=orders"
    assert call["headers"]["authorization"] == "Bearer k3y-VALUE-123"
    assert "k3y-VALUE-123" not in json.dumps(answer)
    # an upstream 4xx is a user error
    Recorder.plan = [(404, {}, b'{"error": "missing"}')]
    with pytest.raises(UserErrorResponse) as caught:
        hw_open.request(
            "POST", f"/v1/projects/{hw_open.project}/actions/get-customer/sync/call",
            json={"parameters": {"#api_key": "k"}, "input": {"params": {"customerId": "x"}, "query": {"expand": "no"}}},
        )  # fmt: skip
    assert "404" in caught.value.message


def test_ductape_route_and_query_examples_answer_the_upstreams_body(hw_open: Client, upstream: str) -> None:
    # Given Ductape's "route parameters" and "query parameters" examples as HTTP actions of their products
    for product, app, event, url, query in (
        ("inventory", "shopify", "get_product", "/products/{params.productId}", {}),
        ("crm", "hubspot", "search_contacts", "/contacts", {"email": "{query.email}", "limit": "{query.limit}"}),
    ):
        project = hw_open.create_project(product)
        document = {"name": app, "sync_actions": [event], "http": {"url": upstream + url, "query": query}}
        hw_open._http.post(f"/v1/projects/{project.id}/actions", json=document,
                           headers={"X-Hatchway-Environment": "dev"}).raise_for_status()  # fmt: skip
    Recorder.plan = [(200, {}, b'{"id": "12345", "title": "Lamp"}'), (200, {}, b'{"results": [{"id": 7}]}')]
    # When Ductape's exact bodies are sent
    product = hw_open._http.post("/v1/ductape/actions/run", json={
        "env": "dev", "product": "inventory", "app": "shopify", "event": "get_product",
        "input": {"params": {"productId": "12345"}},
    })  # fmt: skip
    contacts = hw_open._http.post("/v1/ductape/actions/run", json={
        "env": "dev", "product": "crm", "app": "hubspot", "event": "search_contacts",
        "input": {"query": {"email": "jane@example.com", "limit": 10}},
    })  # fmt: skip
    # Then each answers the upstream's body as is, not hatchway's {status, headers, body} envelope
    assert product.status_code == 200 and product.json() == {"id": "12345", "title": "Lamp"}, product.text
    assert contacts.json() == {"results": [{"id": 7}]}
    assert [call["path"] for call in Recorder.calls] == [
        "/products/12345", "/contacts?email=jane%40example.com&limit=10"
    ]  # fmt: skip


def test_http_action_refuses_private_and_metadata_destinations(client: Client) -> None:
    for url in ("http://169.254.169.254/latest/meta-data", "http://127.0.0.1:9", "http://10.0.0.1", "http://[::1]:9"):
        client.register_action({"name": "nosy", "sync_actions": ["call"], "http": {"url": url}})
        with pytest.raises(UserErrorResponse) as caught:
            client.call_sync("nosy", "call")
        assert "does not call" in caught.value.message, url


def test_http_action_refuses_a_redirect_to_metadata(hw_open: Client, upstream: str) -> None:
    hw_open.register_action({"name": "hop", "sync_actions": ["call"], "http": {"url": upstream + "/start"}})
    Recorder.plan = [(302, {"location": "http://169.254.169.254/latest/meta-data/iam"}, b"")]
    with pytest.raises(UserErrorResponse) as caught:
        hw_open.call_sync("hop", "call")
    assert "does not call" in caught.value.message
    assert len(Recorder.calls) == 1


# ---- cache tags ------------------------------------------------------------------------------


def test_cache_hit_miss_and_expiry(client: Client, tmp_path: Path) -> None:
    counter = tmp_path / "counter.py"
    counter.write_text(
        "import json, os, time\n"
        "config = json.load(open(os.environ['HATCHWAY_DATA_DIR'] + '/config.json'))\n"
        "print(json.dumps({'at': time.time_ns(), 'p': config['parameters']}))\n"
    )
    client.register_action(
        {"name": "clock", "parameters": [{"name": "x"}, {"name": "#key"}], "sync_actions": ["now"],
         "container_parameters": {"entry_point": [sys.executable], "command": [str(counter)]}}
    )  # fmt: skip
    path = f"/v1/projects/{client.project}/actions/clock/sync/now"
    assert client.request("PUT", f"/v1/projects/{client.project}/caches/short", json={"ttl_seconds": 1}) == {
        "tag": "short",
        "ttl_seconds": 1,
    }
    first = client._http.post(path, json={"parameters": {"x": "1", "#key": "s3cret"}, "cache": "short"})
    assert first.headers["x-hatchway-cache"] == "miss" and first.json()["cached"] is False
    again = client._http.post(path, json={"parameters": {"x": "1", "#key": client.encrypt("s3cret")}, "cache": "short"})
    assert again.headers["x-hatchway-cache"] == "hit" and again.json()["cached"] is True
    assert again.json()["ret"] == first.json()["ret"]
    other_secret = client._http.post(path, json={"parameters": {"x": "1", "#key": "different"}, "cache": "short"})
    assert other_secret.json()["cached"] is False
    other_param = client._http.post(path, json={"parameters": {"x": "2", "#key": "s3cret"}, "cache": "short"})
    assert other_param.json()["cached"] is False
    repeat = {"parameters": {"x": "1", "#key": "s3cret"}, "cache": "short"}
    wait_until(
        lambda: client._http.post(path, json=repeat).json()["cached"] is False,
        timeout=10, interval=0.2, what="the cached answer to expire",
    )  # fmt: skip
    documents = client.request("GET", f"/v1/projects/{client.project}/caches/short")
    assert documents["ttl_seconds"] == 1


# ---- sessions --------------------------------------------------------------------------------


def test_session_claims_fill_placeholders_and_bad_tokens_are_refused(client: Client, tmp_path: Path) -> None:
    show = tmp_path / "show.py"
    show.write_text(
        "import json, os\nc = json.load(open(os.environ['HATCHWAY_DATA_DIR'] + '/config.json'))\n"
        "print(json.dumps({'parameters': c['parameters'], 'input': c.get('input')}))\n"
    )
    client.register_action(
        {"name": "whoami", "parameters": [{"name": "user"}], "sync_actions": ["show"],
         "container_parameters": {"entry_point": [sys.executable], "command": [str(show)]}}
    )  # fmt: skip
    secret = "a-shared-secret-of-enough-length-32"
    described = client.request(
        "PUT", f"/v1/projects/{client.project}/sessions/users", json={"algorithm": "HS256", "secret": secret}
    )
    assert described["has_secret"] is True and secret not in json.dumps(described)
    claims = {"user": {"id": "u-42", "plan": "pro"}, "exp": int(time.time()) + 60}
    token = jwt.encode(claims, secret, algorithm="HS256")
    path = f"/v1/projects/{client.project}/actions/whoami/sync/show"
    body = {
        "parameters": {"user": "$Session{user}{id}"},
        "input": {"params": {"plan": "$Session{user}{plan}", "label": "plan=$Session{user}{plan}"}},
        "session": {"tag": "users", "token": token},
    }
    answer = client.request("POST", path, json=body)
    assert answer["ret"] == {"parameters": {"user": "u-42"}, "input": {"params": {"plan": "pro", "label": "plan=pro"}}}
    expired = jwt.encode({**claims, "exp": int(time.time()) - 60}, secret, algorithm="HS256")
    forged = jwt.encode(claims, "another-secret-of-enough-length-32b", algorithm="HS256")
    for bad in (expired, forged, "not-a-jwt"):
        with pytest.raises(UnauthorizedResponse):
            client.request("POST", path, json={**body, "session": {"tag": "users", "token": bad}})
    with pytest.raises(UnauthorizedResponse):
        client.request("POST", path, json={**body, "session": {"tag": "unknown", "token": token}})
    with pytest.raises(UserErrorResponse):
        client.request("POST", path, json={"parameters": {"user": "$Session{user}{id}"}})
    assert all(r["invoked"] == "show" for r in client.list_runs(action="whoami")["items"])
    assert len(client.list_runs(action="whoami")["items"]) == 1  # refused tokens ran nothing


# ---- callbacks -------------------------------------------------------------------------------


def test_signed_callback_is_delivered(hw_open: Client, upstream: str) -> None:
    hw_open.register_action(
        {"name": "quick", "container_parameters": {"entry_point": [sys.executable, "-c"], "command": ["print('hi')"]}}
    )
    secret = hw_open.request("GET", f"/v1/projects/{hw_open.project}/callbacks/secret")["secret"]
    run = hw_open.request(
        "POST", f"/v1/projects/{hw_open.project}/actions/quick/runs", json={"callback_url": upstream + "/hook"}
    )
    wait_until(lambda: Recorder.calls, timeout=20, what="the callback to arrive")
    call = Recorder.calls[0]
    assert call["path"] == "/hook" and call["headers"]["x-hatchway-run-id"] == run["id"]
    parts = dict(p.split("=", 1) for p in call["headers"]["x-hatchway-signature"].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + call["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    delivered = json.loads(call["body"])
    assert delivered["id"] == run["id"] and delivered["status"] == "SUCCESSFUL"


def test_a_callback_url_must_be_http(client: Client) -> None:
    client.register_action({"name": "quick", "container_parameters": {"entry_point": ["true"]}})
    with pytest.raises(ValidationErrorResponse) as caught:
        client.request(
            "POST", f"/v1/projects/{client.project}/actions/quick/runs", json={"callback_url": "ftp://example.com/x"}
        )
    assert caught.value.details[0]["loc"] == ["body", "callback_url"]


def test_sessions_with_a_public_key(client: Client) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    client.request(
        "PUT", f"/v1/projects/{client.project}/sessions/partners",
        json={"algorithm": "ES256", "public_key": public, "audience": "hatchway"},
    )  # fmt: skip
    show = (
        "import json, os\n"
        "print(json.dumps(json.load(open(os.environ['HATCHWAY_DATA_DIR'] + '/config.json'))['parameters']))"
    )
    client.register_action(
        {"name": "partner", "parameters": [{"name": "who"}], "sync_actions": ["show"],
         "container_parameters": {"entry_point": [sys.executable, "-c"], "command": [show]}}
    )  # fmt: skip
    claims = {"sub": "partner-9", "aud": "hatchway", "exp": int(time.time()) + 60}
    token = jwt.encode(claims, key, algorithm="ES256")
    path = f"/v1/projects/{client.project}/actions/partner/sync/show"
    answer = client.request(
        "POST", path, json={"parameters": {"who": "$Session{sub}"}, "session": {"tag": "partners", "token": token}}
    )
    assert answer["ret"] == {"who": "partner-9"}
    wrong_audience = jwt.encode({**claims, "aud": "someone-else"}, key, algorithm="ES256")
    with pytest.raises(UnauthorizedResponse):
        client.request(
            "POST",
            path,
            json={"parameters": {"who": "$Session{sub}"}, "session": {"tag": "partners", "token": wrong_audience}},
        )
    described = client.request("GET", f"/v1/projects/{client.project}/sessions/partners")
    assert described == {
        "tag": "partners",
        "algorithm": "ES256",
        "issuer": None,
        "audience": "hatchway",
        "has_secret": False,
    }


# ---- gaps an audit found ------------------------------------------------------------------------


@pytest.mark.parametrize("new", ["", True])
def test_an_empty_or_true_stash_id_creates_a_stash(client: Client, new: Any) -> None:
    client.register_action(example("pipedream-action"))
    connect = f"/v1/connect/{client.project}/actions/run"
    body = {"id": "greet-user", "external_user_id": "u-5", "configured_props": {}, "stash_id": new}
    first = client.request("POST", connect, json=body)
    second = client.request("POST", connect, json={**body, "configured_props": {"name": "b"}})
    # each asks for a new, empty stash
    assert first["stash_id"].startswith("stash_") and second["stash_id"].startswith("stash_")
    assert first["stash_id"] != second["stash_id"]
    assert first["ret"]["count"] == second["ret"]["count"] == 1


def test_an_expired_stash_is_a_404_and_its_files_go(services: Services, client: Client) -> None:
    from hatchway.domain.records import Document

    client.register_action(example("pipedream-action"))
    connect = f"/v1/connect/{client.project}/actions/run"
    body = {"id": "greet-user", "external_user_id": "u-6", "configured_props": {}}
    stash = client.request("POST", connect, json={**body, "stash_id": "NEW"})["stash_id"]
    files = services.settings.blob_dir / "stashes" / client.project / "development" / stash
    assert (files / "counter.txt").is_file()
    # Given the stash's record past its expiry (a day later)
    services.repos.documents.put_document(Document(client.project, "development", "stash", stash, {}, expires_at=1))
    # When it is named again, it is not found, and its files are removed
    with pytest.raises(NotFoundResponse):
        client.request("POST", connect, json={**body, "stash_id": stash})
    assert not files.exists()


def test_sync_calls_get_no_input_files(client: Client) -> None:
    client.register_action({"name": "quick", "sync_actions": ["go"], "container_parameters": {"entry_point": ["true"]}})
    client._http.put(f"/v1/projects/{client.project}/files/a.txt", content=b"a")
    with pytest.raises(ValidationErrorResponse) as caught:
        client.request("POST", f"/v1/projects/{client.project}/actions/quick/sync/go", json={"inputs": ["a.txt"]})
    assert caught.value.status_code == 422 and caught.value.details[0]["loc"] == ["body", "inputs"]
    assert client.list_runs(action="quick")["items"] == []


@pytest.mark.parametrize(("requires", "found"), [(None, ["a.txt"]), (False, [])])
def test_requires_downloaded_inputs_false_leaves_in_empty(client: Client, requires: Any, found: list[str]) -> None:
    lister = (
        "import json, os\n"
        "d = os.environ['HATCHWAY_DATA_DIR']\n"
        "json.dump(sorted(os.listdir(d + '/in')), open(d + '/out/result.json', 'w'))\n"
    )
    doc: dict[str, Any] = {"name": "lister", "container_parameters": {"entry_point": [sys.executable, "-c", lister]}}
    if requires is not None:
        doc["requires_downloaded_inputs"] = requires
    client.register_action(doc)
    client._http.put(f"/v1/projects/{client.project}/files/a.txt", content=b"a")
    run = client.request("POST", f"/v1/projects/{client.project}/actions/lister/runs", json={"inputs": ["a.txt"]})
    final = client.wait(run["id"], timeout=30)
    assert final["status"] == "SUCCESSFUL" and final["ret"] == found


def test_a_failed_callback_is_retried_with_backoff(hw_open: Client, upstream: str) -> None:
    hw_open.register_action({"name": "quick", "container_parameters": {"entry_point": ["true"]}})
    # Given a receiver that fails the first delivery
    Recorder.plan = [(503, {}, b"busy")]
    hw_open.request("POST", f"/v1/projects/{hw_open.project}/actions/quick/runs", json={"callback_url": upstream})
    # Then the callback is delivered again, after a pause, with the same body
    wait_until(lambda: len(Recorder.calls) >= 2, timeout=30, what="the callback to be retried")
    first, second = Recorder.calls[:2]
    assert second["at"] - first["at"] >= 1.5  # the first backoff is 2 s
    assert first["body"] == second["body"]


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("where", ["metadata", "loopback"])
def test_a_callback_to_a_private_or_metadata_address_is_refused(client: Client, upstream: str, where: str) -> None:
    # Given a gateway that allows no private destinations, and a receiver on loopback that would answer
    url = {"metadata": "http://169.254.169.254/latest/meta-data", "loopback": upstream + "/hook"}[where]
    collect = Collect()
    logger = logging.getLogger("hatchway.callbacks")
    logger.addHandler(collect)
    try:
        client.register_action({"name": "quick", "container_parameters": {"entry_point": ["true"]}})
        run = client.request("POST", f"/v1/projects/{client.project}/actions/quick/runs", json={"callback_url": url})
        assert client.wait(run["id"], timeout=30)["status"] == "SUCCESSFUL"
        # Then the delivery is refused (not retried) and nothing reaches the receiver
        wait_until(lambda: "callback refused" in collect.messages, timeout=20, what="the callback to be refused")
    finally:
        logger.removeHandler(collect)
    assert Recorder.calls == []


def test_an_http_action_to_a_name_that_resolves_to_loopback_is_refused(client: Client, upstream: str) -> None:
    # Given a receiver on loopback, named by host name rather than address
    url = upstream.replace("127.0.0.1", "localhost")
    client.register_action({"name": "local", "sync_actions": ["call"], "http": {"url": url}})
    with pytest.raises(UserErrorResponse) as caught:
        client.call_sync("local", "call")
    assert "does not call" in caught.value.message
    assert Recorder.calls == []


def session_action(client: Client) -> str:
    show = (
        "import json, os\n"
        "print(json.dumps(json.load(open(os.environ['HATCHWAY_DATA_DIR'] + '/config.json'))['parameters']))"
    )
    client.register_action(
        {"name": "who", "parameters": [{"name": "who"}], "sync_actions": ["show"],
         "container_parameters": {"entry_point": [sys.executable, "-c", show]}}
    )  # fmt: skip
    return f"/v1/projects/{client.project}/actions/who/sync/show"


def test_a_session_token_not_valid_yet_is_refused(client: Client) -> None:
    path = session_action(client)
    secret = "a-shared-secret-of-enough-length-32"
    client.request(
        "PUT", f"/v1/projects/{client.project}/sessions/users", json={"algorithm": "HS256", "secret": secret}
    )
    now = int(time.time())
    body = {"parameters": {"who": "$Session{sub}"}}
    valid = jwt.encode({"sub": "u-1", "nbf": now - 10, "exp": now + 60}, secret, algorithm="HS256")
    assert client.request("POST", path, json={**body, "session": {"tag": "users", "token": valid}})["ret"] == {
        "who": "u-1"
    }
    early = jwt.encode({"sub": "u-1", "nbf": now + 600, "exp": now + 900}, secret, algorithm="HS256")
    with pytest.raises(UnauthorizedResponse):
        client.request("POST", path, json={**body, "session": {"tag": "users", "token": early}})
    assert len(client.list_runs(action="who")["items"]) == 1


def test_an_rs256_session(client: Client) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    client.request(
        "PUT", f"/v1/projects/{client.project}/sessions/rsa", json={"algorithm": "RS256", "public_key": public}
    )
    path = session_action(client)
    claims = {"sub": "rsa-user", "exp": int(time.time()) + 60}
    token = jwt.encode(claims, key, algorithm="RS256")
    body = {"parameters": {"who": "$Session{sub}"}}
    assert client.request("POST", path, json={**body, "session": {"tag": "rsa", "token": token}})["ret"] == {
        "who": "rsa-user"
    }
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(UnauthorizedResponse):
        client.request(
            "POST",
            path,
            json={**body, "session": {"tag": "rsa", "token": jwt.encode(claims, other, algorithm="RS256")}},
        )


def test_connect_log_timestamps_are_epoch_milliseconds(client: Client) -> None:
    client.register_action(example("pipedream-action"))
    before = time.time() * 1000
    answer = client.request(
        "POST", f"/v1/connect/{client.project}/actions/run",
        json={"id": "greet-user", "external_user_id": "u-7", "configured_props": {}},
    )  # fmt: skip
    after = time.time() * 1000
    assert answer["os"], answer
    for entry in answer["os"]:
        assert isinstance(entry["ts"], int)
        assert before - 1000 <= entry["ts"] <= after + 1000  # milliseconds, not seconds or microseconds


def test_x_pd_environment_production_is_the_production_environment(services: Services, client: Client) -> None:
    # Given the action registered in production only
    with inprocess_client(services, environment="production") as production:
        production.register_action(example("pipedream-action"))
    connect = f"/v1/connect/{client.project}/actions/run"
    body = {"id": "greet-user", "external_user_id": "u-8", "configured_props": {}}
    # When a Connect caller says production, the production action runs and its run is recorded there
    answer = client.request("POST", connect, json=body, headers={"x-pd-environment": "production"})
    assert answer["ret"]["count"] == 1
    runs = services.repos.runs.list_runs(client.project, "production", 10, None).items
    assert [r.external_user_id for r in runs] == ["u-8"]
    # and development does not have it
    with pytest.raises(NotFoundResponse):
        client.request("POST", connect, json=body, headers={"x-pd-environment": "development"})
