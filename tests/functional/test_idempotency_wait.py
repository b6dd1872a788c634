"""A repeated Idempotency-Key whose first request is still in progress, through the API on SQLite:
it waits no longer than its own request may (the Lambda's remaining time less a margin), then
answers 409 in the error shape with Retry-After, and nothing is created (plan §12)."""

from __future__ import annotations

import json
from typing import Any

from hatchway.api import create_app
from hatchway.domain.runs import RunRequest
from hatchway.server import http_event
from hatchway.services import Services
from tests.conftest import inprocess_client
from tests.functional.actions import behave
from tests.helpers import ADMIN_TOKEN


class ShortLambda:
    """A Lambda context with 2.3 s left: the request may wait 0.3 s."""

    def get_remaining_time_in_millis(self) -> int:
        return 2_300


def test_a_repeat_past_its_requests_time_is_409_with_retry_after_and_creates_nothing(services: Services) -> None:
    # Given a key whose first request holds it (still working, 60 s of in-progress time left)
    with inprocess_client(services) as hw:
        hw.register_action(behave())
        project = hw.project
    request = RunRequest(parameters={"who": "a"})
    scope = f"{project}/development/runs/behave/order-17"
    held = services.repos.idempotency.idempotency_begin(scope, request.fingerprint("runs/behave"), "run_x", 60, 3600)
    assert held.is_owner
    # When the same request repeats the key on a Lambda with 2.3 s left
    app = create_app(services)
    headers = [
        (b"authorization", f"Bearer {ADMIN_TOKEN}".encode()),
        (b"content-type", b"application/json"),
        (b"idempotency-key", b"order-17"),
    ]
    body = json.dumps({"parameters": {"who": "a"}}).encode()
    event = http_event("POST", f"/v1/projects/{project}/actions/behave/runs", "", headers, body)
    answer: dict[str, Any] = app.resolve(event, ShortLambda())
    # Then it is a 409 in the one error shape, with the seconds the key stays held as Retry-After
    assert answer["statusCode"] == 409, answer
    error = json.loads(answer["body"])
    assert error == {
        "status": "error",
        "error": "Conflict",
        "code": 409,
        "message": "a request with this Idempotency-Key is still in progress; try again later",
    }
    assert 55 <= int(answer["headers"]["Retry-After"]) <= 60
    # and no run was made for it
    assert services.repos.runs.get_run("run_x") is None
    assert services.repos.runs.list_runs(project, "development", 10, None).items == []
