"""The operator's log at INFO: one access line per request, one line per run state change, an
application error once - and nothing secret, no host path, no traceback in any line."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from hatchway.client import ApplicationError, Client, NotFound
from hatchway.config import Settings
from hatchway.observability.logs import configure_logging
from hatchway.services import Services
from hatchway.wiring import bootstrap, build_services
from tests.conftest import inprocess_client, make_settings
from tests.functional.test_observability_api import ECHO
from tests.helpers import ADMIN_TOKEN


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    yield stream
    configure_logging("INFO")


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_info_log_has_an_access_line_per_request_and_a_line_per_run_change(
    client: Client, captured: io.StringIO, settings: Settings
) -> None:
    # Given an action with a secret parameter
    client.register_action({**ECHO, "parameters": [{"name": "#password", "required": False}]})
    # When a run goes through, a sync call fails with an application error, and a run is missing
    run = client.wait(client.start_run("echo", {"#password": "hunter2-secret"}).id, timeout=20)
    with pytest.raises(ApplicationError) as failure:
        client.call_sync("echo", "crash", {})
    with pytest.raises(NotFound):
        client.get_run("run_01JZZZZZZZZZZZZZZZZZZZZZZZ")
    logged = lines(captured)

    # Then each request has one access line with its route template, status, duration and correlation
    access = [entry for entry in logged if entry["logger"] == "hatchway.access"]
    submit = next(e for e in access if e["method"] == "POST" and e["route"].endswith("/runs"))
    assert submit["route"] == "/v1/projects/{project_id}/actions/{name}/runs"
    assert submit["status"] == 202 and submit["run_id"] == run.id and submit["level"] == "INFO"
    assert submit["project_id"] == "proj_local" and submit["environment"] == "development"
    assert submit["request_id"] and isinstance(submit["duration_ms"], int | float)
    crash = next(e for e in access if e["route"].endswith("/sync/{sync_action}"))
    assert crash["status"] == 500 and crash["run_id"] == failure.value.run_id
    missing = next(e for e in access if e["status"] == 404)
    assert missing["route"] == "/v1/projects/{project_id}/runs/{run_id}" and missing["method"] == "GET"
    # and every state change of the run is a line, from one status to the next
    ours = [e for e in logged if e["logger"] == "hatchway.runs" and e["run_id"] == run.id]
    changes = [(e.get("from_status"), e["to_status"]) for e in ours]
    assert changes[0] == (None, "ENQUEUED") and ("ENQUEUED", "INPROGRESS") in changes
    assert changes[-1] == ("INPROGRESS", "SUCCESSFUL")
    change = next(e for e in logged if e["logger"] == "hatchway.runs" and e["run_id"] == run.id)
    assert change["action"] == "echo" and change["environment"] == "development" and "attempt" in change
    # and the application error is logged once, with its environment
    errors = [e for e in logged if e.get("exceptionId") == failure.value.exception_id and e["level"] == "ERROR"]
    assert len(errors) == 1 and errors[0]["environment"] == "development"
    # and no line holds a secret, a host path or a traceback
    text = captured.getvalue()
    for leak in ("hunter2-secret", ADMIN_TOKEN, str(settings.home), "Traceback"):
        assert leak not in text


def test_the_access_log_can_be_turned_off(tmp_path: Any, captured: io.StringIO) -> None:
    services: Services = build_services(make_settings(tmp_path / "home", is_access_log_enabled=False))
    bootstrap(services)
    try:
        with inprocess_client(services) as hw:
            hw.health()
            hw.get_project()
    finally:
        services.close()
    assert not [e for e in lines(captured) if e["logger"] == "hatchway.access"]
