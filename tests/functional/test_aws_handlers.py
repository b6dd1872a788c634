"""The Lambda handlers with the sample events of ``events/``, configured as template.yaml configures
them (the aws backend on moto): what ``sam local invoke`` and the deployed functions receive."""

from __future__ import annotations

import importlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from hatchway import wiring
from hatchway.aws.dispatch import LambdaDispatcher
from hatchway.config import Settings
from hatchway.domain.runs import Mode, Run, RunStatus, now_ms
from hatchway.domain.tenants import Principal
from hatchway.wiring import aws_bootstrap as bootstrap
from tests.awsmock import REGION, aws_settings, moto_in_process, patched_env
from tests.helpers import REPO

pytestmark = pytest.mark.aws

EVENTS = REPO / "events"
SAMPLE_TOKEN = "change-me-bootstrap-token"  # noqa: S105 - the token the sample API events carry


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[Settings]:
    """The aws backend's resources on moto, and the variables template.yaml gives the functions."""
    with moto_in_process():
        settings = aws_settings(tmp_path / "home", run_executor="ecs", sync_executor="lambda")
        made = bootstrap(settings)
        env = {
            **made.environment(),
            "HATCHWAY_HOME": str(tmp_path / "home"),
            "HATCHWAY_BOOTSTRAP_TOKEN": SAMPLE_TOKEN,
            "HATCHWAY_SYNC_EXECUTOR": "lambda",
            "HATCHWAY_RUN_EXECUTOR": "ecs",
            "HATCHWAY_RESOURCE_PREFIX": settings.aws.resource_prefix,
        }
        with patched_env(env):
            yield settings


def load(module: str) -> ModuleType:
    """A handler module as a fresh Lambda container loads it (its process's services built anew)."""
    wiring.lambda_services.cache_clear()
    return importlib.reload(importlib.import_module(module))


def seed_run(settings: Settings, run_id: str, external_id: str) -> None:
    from hatchway.store.dynamodb import DynamoDbStore

    now = now_ms()
    store = DynamoDbStore.from_settings(settings)
    store.runs.create_run(
        Run(run_id, "proj_local", "development", "hello", 1, "sha256:" + "0" * 64, mode=Mode.ASYNC,
            created_at=now, available_at=now, external_id=external_id)
    )  # fmt: skip


def stored(settings: Settings, run_id: str) -> Run:
    from hatchway.store.dynamodb import DynamoDbStore

    run = DynamoDbStore.from_settings(settings).runs.get_run(run_id, "proj_local")  # as the API reads it
    assert run is not None
    return run


def test_the_api_function_answers_its_sample_events(deployed: Settings) -> None:
    api = load("handlers.api")
    health = api.handler(sample("ApiFunction/health.json"), None)
    assert health["statusCode"] == 200 and json.loads(health["body"])["status"] == "ok"
    # a fresh deployment has no project: the samples' proj_local is made by the create-project sample
    missing = api.handler(sample("ApiFunction/list-actions.json"), None)
    assert missing["statusCode"] == 404 and json.loads(missing["body"])["message"] == "no project proj_local"
    made = api.handler(sample("ApiFunction/create-project.json"), None)
    assert made["statusCode"] == 201 and json.loads(made["body"])["id"] == "proj_local"
    listed = api.handler(sample("ApiFunction/list-actions.json"), None)
    assert listed["statusCode"] == 200 and json.loads(listed["body"]) == {"items": [], "next": None}
    # the sample token is the deployment's bootstrap token; any other is refused
    other = sample("ApiFunction/list-actions.json")
    other["headers"]["authorization"] = "Bearer someone-else"
    refused = api.handler(other, None)
    assert refused["statusCode"] == 401 and json.loads(refused["body"])["status"] == "error"


def started(deployed: Settings, running: str, key: str, ref: str) -> tuple[ModuleType, str]:
    """The events function, and a seeded run its ``running`` sample event moved to INPROGRESS."""
    event = sample(running)
    run_id = event["detail"][key]
    seed_run(deployed, run_id, event["detail"][ref])
    events = load("handlers.events")
    assert events.handler(event, None) == {"run_id": run_id, "status": "INPROGRESS"}
    return events, run_id


def test_the_events_function_fails_a_batch_run_the_adapter_never_recorded(deployed: Settings) -> None:
    events, run_id = started(deployed, "EventsFunction/batch-job-running.json", "jobName", "jobId")
    # the job SUCCEEDED, but nothing recorded the run (no adapter ran in it): a platform failure
    assert events.handler(sample("EventsFunction/batch-job-succeeded.json"), None)["status"] == "FAILED"
    run = stored(deployed, run_id)
    assert run.status == RunStatus.FAILED and run.error is not None and run.error.kind == "platform"
    assert "ENTRYPOINT" in run.error.message


def test_the_events_function_leaves_a_run_the_adapter_recorded_as_it_is(deployed: Settings) -> None:
    from hatchway.store.dynamodb import DynamoDbStore

    events, run_id = started(deployed, "EventsFunction/batch-job-running.json", "jobName", "jobId")
    # the container's adapter recorded the run's end (with no result) before the job ended
    adapter = DynamoDbStore.from_settings(deployed).runs
    assert adapter.get_run(run_id, "proj_local") is not None  # a container reads its run with its project first
    adapter.transition(run_id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL)
    assert events.handler(sample("EventsFunction/batch-job-succeeded.json"), None)["status"] == "SUCCESSFUL"
    assert stored(deployed, run_id).ret is None


def test_the_events_function_fails_a_run_whose_job_failed(deployed: Settings) -> None:
    failed = sample("EventsFunction/batch-job-failed.json")
    run_id = failed["detail"]["jobName"]
    seed_run(deployed, run_id, failed["detail"]["jobId"])
    assert load("handlers.events").handler(failed, None)["status"] == "FAILED"
    run = stored(deployed, run_id)
    assert run.error is not None and run.error.kind == "platform" and "CannotPullContainerError" in run.error.message


def test_the_events_function_fails_an_ecs_run_the_adapter_never_recorded(deployed: Settings) -> None:
    events, run_id = started(deployed, "EventsFunction/ecs-task-running.json", "startedBy", "taskArn")
    # exit 0 without the adapter having recorded the run: a platform failure, not SUCCESSFUL
    assert events.handler(sample("EventsFunction/ecs-task-stopped.json"), None)["status"] == "FAILED"
    assert "without running hatchway's adapter" in stored(deployed, run_id).error.message  # type: ignore[union-attr]


def test_the_events_function_ignores_what_is_not_a_hatchway_run(deployed: Settings) -> None:
    events = load("handlers.events")
    foreign = sample("EventsFunction/ecs-task-stopped.json")
    foreign["detail"]["startedBy"] = "AWS Batch"
    assert "ignored" in events.handler(foreign, None)
    assert "ignored" in events.handler({"source": "aws.s3", "detail-type": "Object Created", "detail": {}}, None)
    unknown = sample("EventsFunction/batch-job-succeeded.json")  # no such run in this table
    assert "ignored" in events.handler(unknown, None)


def test_the_runner_function_leaves_alone_a_run_it_does_not_know(deployed: Settings) -> None:
    runner = load("handlers.runner")
    event = sample("RunnerFunction/run.json")
    assert runner.handler(event, None) == {"run_id": event["run_id"], "ignored": "no such run"}


def test_the_sweeper_function_settles_a_run_whose_task_ecs_no_longer_knows(
    deployed: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an ECS run whose task is unknown to ECS (its events never came), and a sweep that
    # looks up every unfinished remote run at once
    running = sample("EventsFunction/ecs-task-running.json")
    run_id, task = running["detail"]["startedBy"], running["detail"]["taskArn"]
    boto3.client("ecs", region_name=REGION).create_cluster(clusterName="hatchway-runs")
    seed_run(deployed, run_id, task)
    monkeypatch.setenv("HATCHWAY_REMOTE_STALE_SECONDS", "0")
    # When the scheduled event invokes the sweeper
    report = load("handlers.sweeper").handler(sample("SweeperFunction/scheduled.json"), None)
    # Then the run ended as a lost task ends it, and the report says so
    assert report["remote_checked"] == 1 and report["remote_settled"] == [run_id] and report["failures"] == 0
    run = stored(deployed, run_id)
    assert run.status == RunStatus.FAILED and run.error is not None and "no longer knows the task" in run.error.message


def test_a_run_of_an_http_action_goes_from_the_api_function_to_the_runner_function(
    deployed: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[dict[str, Any]] = []

    class Upstream(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the handler's protocol
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "12")
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Given the runner function deployed, and the API and runner functions configured as the template does
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="runner", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as made:
        made.writestr("handler.py", "def handler(event, context):\n    return event\n")
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="hatchway-runner", Runtime="python3.12", Role=role, Handler="handler.handler",
        Code={"ZipFile": archive.getvalue()},
    )  # fmt: skip
    monkeypatch.setenv("HATCHWAY_RUNNER_FUNCTION", "hatchway-runner")
    monkeypatch.setenv("HATCHWAY_HTTP_ALLOW", "loopback")
    try:
        api = load("handlers.api")
        services = wiring.lambda_services()
        dispatcher = services.runs.dispatcher
        assert isinstance(dispatcher, LambdaDispatcher) and dispatcher.function == "hatchway-runner"
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        admin = Principal(None, None, frozenset({"admin"}))
        services.tenants.create_project(admin, "local", project_id="proj_local")
        services.actions.register(
            admin, "proj_local", "development",
            {"name": "hello", "parameters": [{"name": "who", "required": True}],
             "http": {"method": "POST", "url": url, "body": {"to": "{parameters.who}"}}},
        )  # fmt: skip
        # When the sample run request reaches the API function
        answer = api.handler(sample("ApiFunction/start-run.json"), None)
        assert answer["statusCode"] == 202, answer["body"]
        run_id = json.loads(answer["body"])["id"]
        assert stored(deployed, run_id).status == RunStatus.ENQUEUED and received == []
        # and the runner function is invoked with its id (as the dispatch asked Lambda to)
        summary = load("handlers.runner").handler({"run_id": run_id, "project_id": "proj_local"}, None)
        # Then the runner made the call and recorded the run's end
        assert summary == {"run_id": run_id, "status": "SUCCESSFUL", "attempts": 1}
        assert received == [{"to": "you"}]
        assert stored(deployed, run_id).ret["body"] == {"ok": True}
    finally:
        server.shutdown()


@pytest.mark.parametrize("path", ["/v1/projects/proj_nope/actions", "/v1/projects/proj_nope/runs"])
def test_the_api_function_answers_404_for_the_lists_of_a_project_that_does_not_exist(
    deployed: Settings, path: str
) -> None:
    # Given a deployment where proj_local exists and proj_nope does not
    api = load("handlers.api")
    assert api.handler(sample("ApiFunction/create-project.json"), None)["statusCode"] == 201
    event = sample("ApiFunction/list-actions.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    # When the global admin lists proj_nope's actions or runs
    answer = api.handler(event, None)
    # Then it is a 404 in the API's error shape, as POST to it is (and as the embedded backend answers)
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 404 and body["status"] == "error" and body["message"] == "no project proj_nope"
    # while the same list of a project that exists is an empty page
    event["rawPath"] = event["requestContext"]["http"]["path"] = path.replace("proj_nope", "proj_local")
    assert json.loads(api.handler(event, None)["body"]) == {"items": [], "next": None}


@pytest.mark.parametrize("module", ["handlers.api", "handlers.events", "handlers.pipelines", "handlers.runner",
                                    "handlers.sweeper"])  # fmt: skip
def test_every_handler_is_wrapped_by_the_lambda_entry(deployed: Settings, module: str) -> None:
    # the Lambda context in every log line and the X-Ray segment come from one wrapper
    # (hatchway.observability.lambda_handler), which each of the five functions must go through
    handler = load(module).handler
    assert handler.__module__ == "hatchway.observability" and handler.__qualname__ == "lambda_handler.<locals>.handler"
