"""Issue 20: Ductape's call shape as is, per-request retries on every sync call.

In-process against real processes and the real SQLite store (tests/conftest.py's ``client``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from hatchway.client import Client
from hatchway.config import Settings
from tests.conftest import make_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # the flaky actions count their attempts in a file of the test's (no sandbox to keep it out)
    return make_settings(tmp_path / "home", sandbox="none")


# ---- retries on sync calls -------------------------------------------------------------------

FLAKY = """\
import json, os, sys
counter = os.path.join(sys.argv[1], "count")
n = int(open(counter).read()) if os.path.exists(counter) else 0
open(counter, "w").write(str(n + 1))
if n < int(sys.argv[2]):
    print("not yet", file=sys.stderr)
    sys.exit(int(sys.argv[3]))
print(json.dumps({"tries": n + 1}))
"""


def flaky_action(client: Client, tmp_path: Path, name: str, failures: int, code: int) -> str:
    script = tmp_path / f"{name}.py"
    script.write_text(FLAKY)
    state = tmp_path / name
    state.mkdir()
    client.register_action(
        {"name": name, "sync_actions": ["go"],
         "container_parameters": {"entry_point": [sys.executable, str(script), str(state), str(failures), str(code)]}}
    )  # fmt: skip
    return f"/v1/projects/{client.project}/actions/{name}/sync/go"


def call(client: Client, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One POST, as sent (the client's own retries would hide what one call does)."""
    answer = client._http.post(path, json=body)
    return answer.status_code, answer.json()


def run_of(client: Client, run_id: str) -> dict[str, Any]:
    found: dict[str, Any] = client.request("GET", f"/v1/projects/{client.project}/runs/{run_id}")
    return found


def test_a_command_sync_call_retries_application_errors_as_attempts(client: Client, tmp_path: Path) -> None:
    path = flaky_action(client, tmp_path, "flaky", failures=1, code=3)
    status, answer = call(client, path, {"retries": 3})
    assert status == 200 and answer["ret"] == {"tries": 2}, answer
    run = run_of(client, answer["run_id"])
    assert run["status"] == "SUCCESSFUL" and run["attempt"] == 2 and run["max_attempts"] == 4
    logs = client.request("GET", f"/v1/projects/{client.project}/runs/{run['id']}/logs")["items"]
    assert any("attempt 2 of 4" in entry["msg"] for entry in logs)


def test_sync_retries_stop_at_their_count_and_never_retry_a_user_error(client: Client, tmp_path: Path) -> None:
    path = flaky_action(client, tmp_path, "broken", failures=10, code=3)
    status, answer = call(client, path, {"retries": 2})
    assert status == 500
    run = run_of(client, answer["runId"])
    assert run["status"] == "FAILED" and run["attempt"] == 3 and run["max_attempts"] == 3
    path = flaky_action(client, tmp_path, "refuses", failures=1, code=1)
    status, answer = call(client, path, {"retries": 3})
    assert status == 400 and run_of(client, answer["runId"])["attempt"] == 1
    status, answer = call(client, path, {})  # the second call succeeds: the first ran once
    assert status == 200 and answer["ret"] == {"tries": 2}


# ---- Ductape's actions.run ---------------------------------------------------------------------

ECHO = """\
import json, os, sys
c = json.load(open(os.environ["HATCHWAY_DATA_DIR"] + "/config.json"))
part = c.get("input", {}).get(sys.argv[1], {})
print(json.dumps({**json.loads(sys.argv[2]), **part}))
"""
DUCTAPE = "/v1/ductape/actions/run"


def app_in(
    client: Client, tmp_path: Path, project: str, env: str, app: str, event: str, part: str, **extra: Any
) -> None:
    """An app (action) of ``project`` in ``env`` whose ``event`` answers ``extra`` with the input's ``part``."""
    script = tmp_path / "echo.py"
    script.write_text(ECHO)
    command = [sys.executable, str(script), part, json.dumps(extra)]
    document = {"name": app, "sync_actions": [event], "container_parameters": {"entry_point": command}}
    answer = client._http.post(
        f"/v1/projects/{project}/actions", json=document, headers={"X-Hatchway-Environment": env}
    )
    assert answer.status_code == 201, answer.text


def ductape(client: Client, body: dict[str, Any]) -> Any:
    return client._http.post(DUCTAPE, json=body)


def test_ductape_quick_example_answers_the_apps_result_as_is(client: Client, tmp_path: Path) -> None:
    product = client.create_project("my-product")
    duplicate = client._http.post("/v1/projects", json={"name": "my-product"})
    assert duplicate.status_code == 409 and duplicate.json()["error"] and "my-product" in duplicate.json()["message"]
    app_in(client, tmp_path, product.id, "dev", "stripe-app", "create_customer", "body", id="cus_xxx")
    body = {
        "env": "dev",
        "product": "my-product",
        "app": "stripe-app",
        "event": "create_customer",
        "input": {"body": {"email": "john@example.com", "name": "John Doe"}},
    }
    answer = ductape(client, body)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"id": "cus_xxx", "email": "john@example.com", "name": "John Doe"}
    run = client._http.get(f"/v1/projects/{product.id}/runs/{answer.headers['x-hatchway-run-id']}",
                           headers={"X-Hatchway-Environment": "dev"}).json()  # fmt: skip
    assert (
        run["action"]["name"] == "stripe-app" and run["invoked"] == "create_customer" and run["status"] == "SUCCESSFUL"
    )
    # the product by its id, too; an unknown product, app or event is a 404, an unknown field a 422
    assert ductape(client, {**body, "product": product.id}).json()["email"] == "john@example.com"
    assert ductape(client, {**body, "product": "no-such-product"}).status_code == 404
    assert ductape(client, {**body, "event": "delete_customer"}).status_code == 404
    assert ductape(client, {**body, "env": "prd"}).status_code == 404
    refused = ductape(client, {**body, "parameters": {}})
    assert refused.status_code == 422 and refused.json()["details"][0]["loc"][-1] == "parameters"


def test_ductape_a_project_token_reaches_only_its_own_product(client: Client, tmp_path: Path) -> None:
    mine, other = client.create_project("payments"), client.create_project("crm")
    app_in(client, tmp_path, mine.id, "prd", "stripe", "create_payment_intent", "body", id="pi_1")
    token = client.request("POST", f"/v1/projects/{mine.id}/tokens", json={"scopes": ["runs:write", "runs:read"]})
    body = {"env": "prd", "product": "payments", "app": "stripe", "event": "create_payment_intent",
            "input": {"body": {"amount": 2000, "currency": "usd", "customer": "cus_123"}}}  # fmt: skip
    headers = {"Authorization": f"Bearer {token['token']}"}
    answer = client._http.post(DUCTAPE, json=body, headers=headers)
    assert answer.json() == {"id": "pi_1", "amount": 2000, "currency": "usd", "customer": "cus_123"}
    for foreign in ("crm", other.id, "no-such-product"):  # alike, whether it exists or not
        refused = client._http.post(DUCTAPE, json={**body, "product": foreign}, headers=headers)
        assert refused.status_code == 403, refused.text


def test_ductape_session_example_fills_session_placeholders(client: Client, tmp_path: Path) -> None:
    project = client.create_project("dashboard")
    app_in(client, tmp_path, project.id, "prd", "analytics", "get_user_stats", "params")
    secret = "a-shared-secret-of-enough-length-32"
    client._http.put(f"/v1/projects/{project.id}/sessions/user-session", json={"algorithm": "HS256", "secret": secret},
                     headers={"X-Hatchway-Environment": "prd"}).raise_for_status()  # fmt: skip
    token = jwt.encode({"user": {"id": "u-42"}, "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    body = {
        "env": "prd",
        "product": "dashboard",
        "app": "analytics",
        "event": "get_user_stats",
        "input": {"params": {"userId": "$Session{user}{id}"}},
        "session": {"tag": "user-session", "token": token},
    }
    answer = ductape(client, body)
    assert answer.status_code == 200 and answer.json() == {"userId": "u-42"}, answer.text
    forged = jwt.encode({"user": {"id": "u-1"}}, "another-secret-of-enough-length-32b", algorithm="HS256")
    assert ductape(client, {**body, "session": {"tag": "user-session", "token": forged}}).status_code == 401


def test_ductape_cache_and_retries_example(client: Client, tmp_path: Path) -> None:
    project = client.create_project("catalog")
    state = tmp_path / "state"
    state.mkdir()
    script = tmp_path / "list.py"
    script.write_text(FLAKY)
    command = [sys.executable, str(script), str(state), "1", "3"]
    document = {
        "name": "products-api",
        "sync_actions": ["list_products"],
        "container_parameters": {"entry_point": command},
    }
    client._http.post(f"/v1/projects/{project.id}/actions", json=document,
                      headers={"X-Hatchway-Environment": "prd"}).raise_for_status()  # fmt: skip
    body = {
        "env": "prd",
        "product": "catalog",
        "app": "products-api",
        "event": "list_products",
        "input": {"query": {"category": "electronics"}},
        "cache": "products-list",
        "retries": 3,
    }
    first = ductape(client, body)
    assert first.status_code == 200 and first.json() == {"tries": 2}, first.text
    assert first.headers["x-hatchway-cache"] == "miss"
    again = ductape(client, body)
    assert again.json() == {"tries": 2} and again.headers["x-hatchway-cache"] == "hit"
    without_retries = ductape(client, {**body, "cache": None, "retries": None, "input": {"query": {"page": 2}}})
    assert without_retries.json() == {"tries": 3}
