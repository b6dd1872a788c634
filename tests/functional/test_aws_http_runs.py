"""Async runs of HTTP actions on AWS: dispatched to the runner function, executed there, swept.

The API side is the services on the aws backend (DynamoDB, KMS, S3 on moto) wired as the API
function is: their run dispatcher invokes the runner function asynchronously on moto's Lambda. The
runner's side is :meth:`hatchway.services.dispatched.DispatchedRuns.run_dispatched` called in this
process with the id moto's Lambda received, as the function's handler does; the upstream is a
real HTTP server on loopback.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from hatchway.aws.aws_lambda import LambdaExecutor
from hatchway.aws.batch import BatchEngine
from hatchway.aws.clients import AwsClients
from hatchway.aws.dispatch import LambdaDispatcher
from hatchway.domain.runs import Run, RunRequest, RunStatus, now_ms
from hatchway.services import Services
from hatchway.wiring import build_placement
from tests.awsmock import REGION, CallCounter, answer_instead, aws_services, aws_settings, lambda_error
from tests.functional.awsstack import ACTION, ADMIN, ENV, P, Stack, moto_infrastructure, submit
from tests.helpers import wait_until

pytestmark = pytest.mark.aws

RUNNER = "hwtests-runner"


class Upstream(BaseHTTPRequestHandler):
    """Answers from ``plan`` (status, body), else 200; holds each answer while ``gate`` is closed."""

    plan: list[tuple[int, bytes]] = []
    calls: list[str] = []
    gate = threading.Event()

    def do_POST(self) -> None:  # noqa: N802 - the handler's protocol
        length = int(self.headers.get("content-length") or 0)
        Upstream.calls.append(self.rfile.read(length).decode())
        Upstream.gate.wait(30)
        status, body = Upstream.plan.pop(0) if Upstream.plan else (200, b'{"ok": true}')
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    Upstream.plan, Upstream.calls = [], []
    Upstream.gate.set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    Upstream.gate.set()
    server.shutdown()


@dataclass
class Deployed:
    services: Services
    counter: CallCounter
    invoked: list[dict[str, Any]]
    session: Any

    def runner(self, run_id: str, seconds: float = 900.0) -> dict[str, Any]:
        """The runner function's invocation for ``run_id``, with ``seconds`` of Lambda time."""
        deadline = now_ms() / 1000 + seconds
        return self.services.dispatched.run_dispatched(
            run_id, lambda: deadline - now_ms() / 1000, "runner/test", project_id=P
        )


@pytest.fixture(scope="module")
def infrastructure() -> Iterator[dict[str, Any]]:
    with moto_infrastructure() as made:
        session = boto3.session.Session(region_name=REGION)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
        session.client("lambda").create_function(
            FunctionName=RUNNER, Runtime="python3.12", Role=made["lambda_role_arn"], Handler="handler.handler",
            Code={"ZipFile": buffer.getvalue()},
        )  # fmt: skip
        yield made


@pytest.fixture
def deployed(tmp_path: Path, infrastructure: dict[str, Any]) -> Deployed:
    """A gateway wired as the API function is: no worker pool, runs of HTTP actions dispatched."""
    session = boto3.session.Session(region_name=REGION)
    counter = CallCounter(session)
    settings = aws_settings(tmp_path / "home", http_allow=("loopback",), runner_function=RUNNER).with_(**infrastructure)
    aws = AwsClients(REGION, None, session)
    placement = build_placement(
        settings, sync=LambdaExecutor.from_settings(settings, aws), engine=BatchEngine.from_settings(settings, aws)
    )
    services = aws_services(settings, session, placement)  # runs of HTTP actions go to RUNNER
    invoked: list[dict[str, Any]] = []
    counter.hooks.append(
        lambda service, operation, params: (
            invoked.append(json.loads(params["Payload"]))
            if (service, operation) == ("lambda", "Invoke") and params.get("FunctionName") == RUNNER
            else None
        )
    )
    return Deployed(services, counter, invoked, session)


def http_action(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "notify",
        "parameters": [{"name": "message", "required": True}, {"name": "#key"}],
        "http": {
            "method": "POST",
            "url": url + "/notify",
            "body": {"text": "{parameters.message}", "key": "{parameters.#key}"},
        },
        **extra,
    }


def start(deployed: Deployed, **parameters: str) -> Run:
    answer = deployed.services.runs.submit(ADMIN, P, ENV, "notify", RunRequest({"#key": "k", **parameters})).to_api()
    assert answer["status"] == "ENQUEUED"
    run = deployed.services.repos.runs.get_run(answer["id"])
    assert run is not None
    return run


def stored(deployed: Deployed, run_id: str) -> Run:
    run = deployed.services.repos.runs.get_run(run_id)
    assert run is not None
    return run


def test_a_run_is_dispatched_to_the_runner_and_executed_there(deployed: Deployed, upstream: str) -> None:
    deployed.services.actions.register(ADMIN, P, ENV, http_action(upstream))
    secret = deployed.services.tenants.encrypt(ADMIN, P, ENV, "k3y-in-the-store")
    # Given a run accepted by the API function: recorded, then handed to the runner in one invoke
    deployed.counter.clear()
    answer = deployed.services.runs.submit(
        ADMIN, P, ENV, "notify", RunRequest({"message": "hello", "#key": secret})
    ).to_api()
    calls = deployed.counter.summary()
    assert calls == {"dynamodb.GetItem": 1, "dynamodb.PutItem": 1, "lambda.Invoke": 1}, calls
    run = stored(deployed, answer["id"])
    assert deployed.invoked == [{"run_id": run.id, "project_id": P}]
    # When the runner function is invoked with that id
    summary = deployed.runner(run.id)
    # Then it made the call and recorded the outcome as a worker would
    assert summary == {"run_id": run.id, "status": "SUCCESSFUL", "attempts": 1}
    # (the runner decrypted the secret with KMS; it reached the upstream, never the record)
    assert json.loads(Upstream.calls[0]) == {"text": "hello", "key": "k3y-in-the-store"}
    done = stored(deployed, run.id)
    assert done.status == RunStatus.SUCCESSFUL and done.attempt == 1 and done.lease_owner is None
    assert done.ret["status"] == 200 and done.ret["body"] == {"ok": True}
    logs = deployed.services.repos.runs.read_logs(run.id).items
    assert any("/notify -> 200" in entry.msg for entry in logs)
    assert "k3y-in-the-store" not in json.dumps((done).to_api()) + repr(logs)
    # and an invocation delivered twice (Lambda's async queue retries) changes nothing
    assert deployed.runner(run.id) == {"run_id": run.id, "status": "SUCCESSFUL", "attempts": 0}
    assert len(Upstream.calls) == 1


def test_the_runner_makes_a_retry_that_is_due_soon(deployed: Deployed, upstream: str) -> None:
    deployed.services.actions.register(ADMIN, P, ENV, http_action(upstream, retry={"count": 1, "interval_seconds": 0}))
    Upstream.plan = [(503, b"{}")]
    run = start(deployed, message="again")
    assert deployed.runner(run.id) == {"run_id": run.id, "status": "SUCCESSFUL", "attempts": 2}
    assert stored(deployed, run.id).attempt == 2 and len(Upstream.calls) == 2


def test_a_later_retry_is_left_to_the_sweep(deployed: Deployed, upstream: str) -> None:
    deployed.services.actions.register(
        ADMIN, P, ENV, http_action(upstream, retry={"count": 1, "interval_seconds": 600})
    )
    Upstream.plan = [(500, b"{}")]
    run = start(deployed, message="later")
    summary = deployed.runner(run.id)
    assert summary["deferred"] and summary["attempts"] == 1
    waiting = stored(deployed, run.id)
    assert waiting.status == RunStatus.ENQUEUED and waiting.available_at > now_ms() + 500_000
    deployed.invoked.clear()
    # the sweep leaves it until it is due, then dispatches it again
    assert deployed.services.sweeper.sweep().dispatched == []
    report = deployed.services.sweeper.sweep(waiting.available_at + 60_000)
    assert report.dispatched == [run.id] and deployed.invoked == [{"run_id": run.id, "project_id": P}]


def test_a_runner_that_has_too_little_time_leaves_the_run(deployed: Deployed, upstream: str) -> None:
    deployed.services.actions.register(ADMIN, P, ENV, http_action(upstream))
    run = start(deployed, message="short")
    # an HTTP call may take 30 s; 20 s of Lambda time cannot hold it and record its end
    assert deployed.runner(run.id, seconds=20)["deferred"]
    assert stored(deployed, run.id).status == RunStatus.ENQUEUED and Upstream.calls == []


def test_a_runner_killed_mid_attempt_is_recovered_by_the_sweep(deployed: Deployed, upstream: str) -> None:
    deployed.services.actions.register(ADMIN, P, ENV, http_action(upstream))
    run = start(deployed, message="crash")
    # Given a runner that claimed the run until its deadline, and was then killed
    held = deployed.services.dispatched.claim(run.id, "runner/killed", now_ms() - 1)
    assert held is not None and held.status == RunStatus.INPROGRESS
    # When the sweep runs after that deadline: the run is queued again, then dispatched again
    first = deployed.services.sweeper.sweep()
    assert first.requeued == [run.id]
    deployed.invoked.clear()
    second = deployed.services.sweeper.sweep(now_ms() + 20_000)
    assert second.dispatched == [run.id] and deployed.invoked == [{"run_id": run.id, "project_id": P}]
    # Then the next runner finishes it
    assert deployed.runner(run.id)["status"] == "SUCCESSFUL"
    assert stored(deployed, run.id).lost_attempts == 1


def test_a_dispatch_that_fails_still_accepts_the_run_and_the_sweep_dispatches_it(
    deployed: Deployed, upstream: str
) -> None:
    deployed.services.actions.register(ADMIN, P, ENV, http_action(upstream))
    dispatcher = deployed.services.sweeper.dispatcher
    assert isinstance(dispatcher, LambdaDispatcher)
    answer_instead(dispatcher.aws.client("lambda"), "Invoke", 429, lambda_error("TooManyRequestsException"))
    run = start(deployed, message="throttled")
    assert stored(deployed, run.id).status == RunStatus.ENQUEUED
    deployed.invoked.clear()
    report = deployed.services.sweeper.sweep(now_ms() + 20_000)
    assert report.dispatched == [run.id] and deployed.invoked == [{"run_id": run.id, "project_id": P}]


def test_cancel_reaches_a_run_the_runner_is_executing(deployed: Deployed, upstream: str) -> None:
    deployed.services.actions.register(ADMIN, P, ENV, http_action(upstream))
    Upstream.gate.clear()  # the upstream holds its answer
    run = start(deployed, message="slow")
    outcome: list[dict[str, Any]] = []
    runner = threading.Thread(target=lambda: outcome.append(deployed.runner(run.id)))
    runner.start()
    wait_until(lambda: Upstream.calls, 10, 0.05, "the upstream to be called")
    assert deployed.services.runs.cancel(ADMIN, P, ENV, run.id).status == RunStatus.TERMINATING
    Upstream.gate.set()
    runner.join(30)
    assert outcome == [{"run_id": run.id, "status": "TERMINATED", "attempts": 1}]
    assert stored(deployed, run.id).status == RunStatus.TERMINATED


def test_runs_the_gateway_does_not_execute_itself_are_not_dispatched(deployed: Deployed) -> None:
    # a Batch run is submitted to Batch, never to the runner; a runner given its id leaves it alone
    deployed.services.actions.register(ADMIN, P, ENV, ACTION)
    deployed.invoked.clear()
    run_id, _ = submit(
        Stack(deployed.services, deployed.counter, deployed.session, deployed.services.settings), who="w"
    )
    assert deployed.invoked == []
    assert "ignored" in deployed.runner(run_id)
    assert stored(deployed, run_id).status == RunStatus.ENQUEUED
