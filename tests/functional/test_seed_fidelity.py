"""Issue 20: Ductape's call shape as is, per-request retries on every sync call.

In-process against real processes and the real SQLite store (tests/conftest.py's ``client``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

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
