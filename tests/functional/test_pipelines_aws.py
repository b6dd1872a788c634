"""Pipelines on Step Functions, on moto: state machines defined, executed, approved, terminated.

moto's Step Functions really executes state machines here (``execute_state_machine``), with
Lambda tasks answered by moto's Lambda (it echoes its payload; hatchway's pipeline function is not
run by it). Two limits of moto 5.2 shape these tests: its Batch ``.sync`` integration passes the
ASL's ``JobName`` straight to botocore and fails, so async steps are checked structurally
(``tests/unit/test_pipelines_asl.py``) and through the pipeline function called directly; and it
deep-copies its whole backend on every ``StartExecution``, which fails once an execution thread
exists, so :func:`_share_backend` makes that copy share the backend (a fix of the double, not of
hatchway).
"""

from __future__ import annotations

import copy
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from hatchway.aws.asl import Targets
from hatchway.aws.stepfunctions import Bindings, StepFunctionsEngine
from hatchway.client import Client, ConflictResponse, NotFoundResponse, ValidationErrorResponse
from hatchway.config import Settings
from hatchway.domain.pipelines.spec import spec_of
from hatchway.errors import NotFound
from hatchway.services import Services
from hatchway.wiring import bootstrap, build_services
from tests.conftest import inprocess_client
from tests.functional.stages import base, execute, execution, explain, put, stage, statuses, step
from tests.helpers import wait_until

boto3 = pytest.importorskip("boto3")
moto = pytest.importorskip("moto")
pytestmark = pytest.mark.aws

MOTO = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False},
        "batch": {"use_docker": False}}  # fmt: skip
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/stage:1"


def _share_backend(self: Any, memo: dict[int, Any]) -> Any:
    clone = self.__class__.__new__(self.__class__)
    memo[id(self)] = clone
    for key, value in self.__dict__.items():
        setattr(clone, key, value if key in ("backend", "executions") else copy.deepcopy(value, memo))
    return clone


def _function_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


class Aws:
    """The moto resources a deployment provides, and the engine bound to them."""

    def __init__(self) -> None:
        iam = boto3.client("iam")
        trust = json.dumps({"Version": "2012-10-17", "Statement": []})
        self.role = iam.create_role(RoleName="hatchway-states", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        self.function = boto3.client("lambda").create_function(
                FunctionName="hatchway-pipelines", Runtime="python3.11", Role=self.role, Handler="handler.handler",
                Code={"ZipFile": _function_zip()},
            )["FunctionArn"]  # fmt: skip
        self.batch = boto3.client("batch")
        environment = self.batch.create_compute_environment(
            computeEnvironmentName="hatchway-ce", type="UNMANAGED", serviceRole=self.role
        )["computeEnvironmentArn"]
        self.queue = self.batch.create_job_queue(
            jobQueueName="hatchway-runs", state="ENABLED", priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
        )["jobQueueArn"]  # fmt: skip
        self.sfn = boto3.client("stepfunctions")

    def engine(self, bindings: Bindings) -> StepFunctionsEngine:
        """The pipeline engine bound to these resources and to the gateway's ``bindings``."""
        targets = Targets(function_arn=self.function, job_queue=self.queue)
        return StepFunctionsEngine(bindings, self.sfn, self.role, targets, batch=self.batch)


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto.stepfunctions.models import StateMachine

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setattr(StateMachine, "__deepcopy__", _share_backend, raising=False)
    with moto.mock_aws(config=MOTO):
        yield


@pytest.fixture
def aws(mocked: None) -> Aws:
    return Aws()


@pytest.fixture
def services(settings: Settings, aws: Aws) -> Iterator[Services]:
    """The services, their pipelines on Step Functions (moto)."""
    built = build_services(settings, pool=True, pipeline_engine=aws.engine)
    bootstrap(built)
    yield built
    built.close()


@pytest.fixture
def hw(services: Services, aws: Aws) -> Iterator[Client]:
    with inprocess_client(services) as client:
        client.register_action(stage(image_uri=IMAGE))
        yield client


def settle(hw: Client, name: str, execution_id: str, until: set[str], timeout: float = 30) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        body = execution(hw, name, execution_id)
        return body if body["status"] in until else None

    return wait_until(reached, timeout, 0.1, f"execution {execution_id} to reach {until}")


def sync(name: str, **fields: Any) -> dict[str, Any]:
    return step(name, sync_action="peek", **fields)


def test_defining_a_pipeline_creates_then_updates_its_state_machine(hw: Client, aws: Aws) -> None:
    # Given a pipeline with an async step and a sync step
    first = put(hw, "etl", steps=[step("extract"), sync("check", value="${steps.extract.ret.upper}")])
    machines = aws.sfn.list_state_machines()["stateMachines"]
    assert len(machines) == 1
    arn = machines[0]["stateMachineArn"]
    definition = json.loads(aws.sfn.describe_state_machine(stateMachineArn=arn)["definition"])
    assert definition["States"]["extract"]["Resource"] == "arn:aws:states:::batch:submitJob.sync"
    # the async step's job definition is registered with the action's image and compute requirements
    job_definition = definition["States"]["extract"]["Parameters"]["JobDefinition"]
    registered = aws.batch.describe_job_definitions(jobDefinitionName=job_definition)["jobDefinitions"]
    assert registered[0]["containerProperties"]["image"] == IMAGE
    # When it changes, the same state machine is updated; an identical PUT changes nothing
    second = put(hw, "etl", steps=[step("extract"), sync("check", ignore_errors=True)])
    assert second["version"] == first["version"] + 1
    assert [m["stateMachineArn"] for m in aws.sfn.list_state_machines()["stateMachines"]] == [arn]
    updated = json.loads(aws.sfn.describe_state_machine(stateMachineArn=arn)["definition"])
    assert updated["States"]["check"]["Catch"][0]["Next"] == "check.warned"
    assert put(hw, "etl", steps=[step("extract"), sync("check", ignore_errors=True)])["version"] == second["version"]


def test_an_async_step_needs_an_image_on_aws(hw: Client) -> None:
    hw.register_action(stage("host-only"))
    with pytest.raises(Exception, match="422") as err:
        put(hw, "hosted", steps=[{"name": "x", "action": "host-only"}])
    assert "image_uri" in str(err.value.args) or "image_uri" in getattr(err.value, "message", "")


@pytest.mark.parametrize(
    "field",
    [{"setup_commands": ["apt-get install -y jq"]}, {"run_as_user": "daemon"}, {"volume_mappings": ["/src:/app"]},
     {"export_container_path": "/tmp/out"}],
)  # fmt: skip
def test_a_container_steps_local_fields_are_refused_on_aws(hw: Client, field: dict[str, Any]) -> None:
    # Given a Run Docker container step with a field that needs the pipeline filesystem or the local engine
    container = {"name": "box", "docker_image_name": "public.ecr.aws/docker/library/alpine",
                 "execute_commands": ["echo hi"], **field}  # fmt: skip
    # Then a Step Functions pipeline refuses it, naming the field (a Batch task has no pipeline filesystem)
    with pytest.raises(ValidationErrorResponse) as refused:
        put(hw, "boxed", steps=[container])
    assert refused.value.details[0]["loc"][-1] == next(iter(field))
    assert "Batch or ECS task" in refused.value.message
    # while the fields that live in the step's own script are accepted
    scripted = {"loop": ["a", "b"], "execute_every_command": True, "reset_entrypoint": True}
    assert put(hw, "boxed", steps=[{**{k: v for k, v in container.items() if k not in field}, **scripted}])


def test_an_execution_runs_on_step_functions_through_an_approval(hw: Client, aws: Aws) -> None:
    # Given sync steps, a soft parallel pair, a condition that does not hold, and an approval gate
    put(
        hw,
        "release",
        variables=[{"key": "TARGET", "value": "staging", "settable": True},
                   {"key": "TOKEN", "value": "never-in-the-history", "encrypted": True}],
        steps=[
            sync("prepare"),
            sync("left", run_next="IN_SOFT_PARALLEL"),
            sync("right"),
            sync("prod-only", trigger_conditions=[
                {"trigger_condition": "VAR_IS", "trigger_variable_key": "TARGET", "trigger_variable_value": "prod"}]),
            {"name": "approve", "type": "WAIT_FOR_APPROVE", "comment": "ship it?"},
            sync("tell", trigger_time="ON_WAIT_FOR_APPROVE"),
            sync("ship"),
            sync("celebrate", trigger_time="ON_SUCCESS"),
            sync("mourn", trigger_time="ON_FAILURE", run_only_on_first_failure=False),
        ],
    )  # fmt: skip
    started = execute(hw, "release")
    # Then the state machine runs to its gate, and the record follows its history
    waiting = settle(hw, "release", started["id"], {"WAITING_FOR_APPROVE"})
    assert statuses(waiting)["approve"] == "WAITING_FOR_APPROVE"
    assert statuses(waiting)["prod-only"] == "SKIPPED"
    assert {statuses(waiting)[n] for n in ("prepare", "left", "right")} == {"SUCCESSFUL"}
    assert waiting["steps"][0]["run_id"].startswith("run_")
    arn = aws.sfn.list_executions(stateMachineArn=aws.sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"])[
        "executions"][0]["executionArn"]  # fmt: skip
    history = json.dumps(aws.sfn.get_execution_history(executionArn=arn)["events"], default=str)
    assert "never-in-the-history" not in history and "hwenc:" not in history
    # When it is approved through the API (the task token goes back to Step Functions)
    hw.request("POST", f"{base(hw)}/release/executions/{started['id']}/approve")
    final = settle(hw, "release", started["id"], {"SUCCESSFUL", "WARNING", "FAILED", "TERMINATED"})
    assert final["status"] == "SUCCESSFUL", explain(final)
    assert statuses(final) == {
        "prepare": "SUCCESSFUL", "left": "SUCCESSFUL", "right": "SUCCESSFUL", "prod-only": "SKIPPED",
        "approve": "SUCCESSFUL", "tell": "SUCCESSFUL", "ship": "SUCCESSFUL", "celebrate": "SUCCESSFUL",
        "mourn": "NOT_EXECUTED",
    }  # fmt: skip
    with pytest.raises(ConflictResponse):
        hw.request("POST", f"{base(hw)}/release/executions/{started['id']}/approve")


def test_terminating_stops_the_state_machine_and_runs_on_terminate_steps(hw: Client, aws: Aws) -> None:
    put(hw, "stoppable", steps=[
        sync("before"), {"name": "gate", "type": "WAIT_FOR_APPROVE"}, sync("after"),
        sync("cleanup", trigger_time="ON_TERMINATE"),
    ])  # fmt: skip
    started = execute(hw, "stoppable")
    settle(hw, "stoppable", started["id"], {"WAITING_FOR_APPROVE"})
    hw.request("POST", f"{base(hw)}/stoppable/executions/{started['id']}/terminate")
    final = settle(hw, "stoppable", started["id"], {"TERMINATED", "FAILED", "SUCCESSFUL"})
    assert final["status"] == "TERMINATED", explain(final)
    assert statuses(final) == {"before": "SUCCESSFUL", "gate": "TERMINATED", "after": "NOT_EXECUTED",
                               "cleanup": "SUCCESSFUL"}  # fmt: skip
    machine = aws.sfn.list_state_machines()["stateMachines"][0]["stateMachineArn"]
    names = {e["name"] for e in aws.sfn.list_executions(stateMachineArn=machine)["executions"]}
    assert names == {started["id"], f"{started['id']}-terminate"}


def test_deleting_a_pipeline_deletes_its_state_machine_once_its_executions_ended(hw: Client, aws: Aws) -> None:
    # Given a pipeline on Step Functions with an execution waiting at its gate
    put(hw, "retired", steps=[sync("before"), {"name": "gate", "type": "WAIT_FOR_APPROVE"}, sync("after")])
    started = execute(hw, "retired")
    settle(hw, "retired", started["id"], {"WAITING_FOR_APPROVE"})
    # When it is deleted while the execution is unfinished, the deletion is refused (it would stop it)
    with pytest.raises(ConflictResponse, match="unfinished executions"):
        hw.request("DELETE", f"{base(hw)}/retired")
    assert len(aws.sfn.list_state_machines()["stateMachines"]) == 1
    # Then once the execution ended, DELETE removes the state machine; the execution stays readable
    hw.request("POST", f"{base(hw)}/retired/executions/{started['id']}/terminate")
    settle(hw, "retired", started["id"], {"TERMINATED"})
    hw.request("DELETE", f"{base(hw)}/retired")
    assert aws.sfn.list_state_machines()["stateMachines"] == []
    assert execution(hw, "retired", started["id"])["status"] == "TERMINATED"
    with pytest.raises(NotFoundResponse):
        hw.request("GET", f"{base(hw)}/retired")
    # and defining it again creates a new state machine
    put(hw, "retired", steps=[sync("before")])
    assert len(aws.sfn.list_state_machines()["stateMachines"]) == 1


@pytest.mark.parametrize(
    ("ignore", "expected", "status"),
    [
        (False, {"work": "FAILED", "next": "NOT_EXECUTED", "on-warning": "NOT_EXECUTED", "on-failure": "SUCCESSFUL"},
         "FAILED"),
        (True, {"work": "WARNING", "next": "SUCCESSFUL", "on-warning": "SUCCESSFUL", "on-failure": "NOT_EXECUTED"},
         "WARNING"),
    ],
)  # fmt: skip
def test_a_failing_step_follows_its_catch(
    hw: Client, monkeypatch: pytest.MonkeyPatch, ignore: bool, expected: dict[str, str], status: str
) -> None:
    # Given an async step whose Batch job fails
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    put(hw, "fragile", steps=[
        step("work", ignore_errors=ignore), sync("next"),
        sync("on-warning", trigger_time="ON_WARNING"),
        sync("on-failure", trigger_time="ON_FAILURE", run_only_on_first_failure=False),
    ])  # fmt: skip
    started = execute(hw, "fragile")
    final = settle(hw, "fragile", started["id"], {"SUCCESSFUL", "WARNING", "FAILED", "TERMINATED"})
    # Then the failure went where its Catch says: the ON_FAILURE section, or on with a warning
    assert final["status"] == status, explain(final)
    assert statuses(final) == expected
    if not ignore:
        assert final["steps"][0]["status_reason"]


def test_the_pipeline_function_prepares_runs_and_calls_sync_actions(hw: Client, aws: Aws, services: Services) -> None:
    # Given an execution whose first (sync) step the state machine has passed
    put(
        hw,
        "prepared",
        variables=[{"key": "TOKEN", "value": "s3cret-token", "encrypted": True}],
        steps=[sync("ask", value="hello"),
               step("work", "${steps.ask.ret.upper}", parameters={"#token": "$TOKEN"}),
               {"name": "gate", "type": "WAIT_FOR_APPROVE"}],
    )  # fmt: skip
    started = execute(hw, "prepared")
    settle(hw, "prepared", started["id"], {"WAITING_FOR_APPROVE", "FAILED"})
    function = services.pipelines.function
    record = services.repos.pipelines.get_execution(started["id"])
    assert record is not None and record.engine_ref
    runs = json.loads(aws.sfn.describe_execution(executionArn=record.engine_ref)["input"])["runs"]
    # When the function does what the state machine asks of it
    answer = function.handle({"op": "sync_step", "execution_id": started["id"], "step": "ask", "run_id": runs["s0"]})
    assert answer["ret"]["value"] == "hello"
    function.handle({"op": "start_step", "execution_id": started["id"], "step": "work", "run_id": runs["s1"]})
    # Then the sync call is a run, and the async step's run is recorded with its references resolved
    assert hw.get_run(runs["s0"])["status"] == "SUCCESSFUL"
    work = hw.get_run(runs["s1"])
    assert work["status"] == "ENQUEUED" and work["parameters"]["value"] == "HELLO"
    assert work["parameters"]["#token"] == "[hidden]"
    stored = services.repos.runs.get_run(runs["s1"])
    # recorded for the job's adapter to claim, not submitted by the gateway (the state machine does)
    assert stored is not None and stored.external_id is None
    assert stored.parameters["#token"].startswith("hwenc:")
    # a second delivery of the same task is harmless
    function.handle({"op": "start_step", "execution_id": started["id"], "step": "work", "run_id": runs["s1"]})
    # an EventBridge status change brings the record up to date
    changed = function.handle({"source": "aws.states", "detail": {"name": started["id"], "status": "RUNNING"}})
    assert changed["updated"] is True
    # the approval gate of a known execution waits; one the execution does not have is a NotFound
    assert function.handle({"op": "await_approval", "execution_id": started["id"], "step": "gate"}) == {"waiting": True}
    with pytest.raises(NotFound, match="no step nope"):
        function.handle({"op": "await_approval", "execution_id": started["id"], "step": "nope"})


def test_the_handler_module_wires_the_function(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("HATCHWAY_HOME", str(tmp_path))
    import importlib

    from hatchway import wiring

    wiring.lambda_services.cache_clear()  # a fresh container: its services from this environment
    module = importlib.reload(importlib.import_module("handlers.pipelines"))
    # an approval gate of an execution nobody knows is a NotFound (the state machine's error), not a wait
    with pytest.raises(NotFound, match="no execution pex_x"):
        module.handler({"op": "await_approval", "execution_id": "pex_x", "step": "gate"}, None)
    unknown = module.handler({"source": "aws.states", "detail": {"name": "not-ours"}}, None)
    assert unknown == {"updated": False}


def test_async_steps_run_on_the_batch_executors_definitions(tmp_path: Any) -> None:
    """With the real Batch run executor: the state machine uses the executor's own job definition
    (the runtime adapter for ``Ref::run_id``), and a prepared step's run is recorded, not submitted."""
    from hatchway.aws.batch import BatchEngine
    from hatchway.aws.clients import AwsClients
    from hatchway.domain.tenants import Principal
    from hatchway.executors.process import ProcessExecutor
    from hatchway.store.sqlite import SqliteStore
    from hatchway.wiring import build_placement
    from tests.awsmock import REGION, CallCounter, aws_settings, make_infrastructure, moto_in_process

    with moto_in_process():
        session = boto3.session.Session(region_name=REGION)
        settings = aws_settings(tmp_path / "home").with_(**make_infrastructure(session, "hwpipes"))
        aws = AwsClients(REGION, None, session)
        from hatchway.wiring import aws_bootstrap

        aws_bootstrap(settings, aws)
        runs = BatchEngine.from_settings(settings, aws)
        sfn = session.client("stepfunctions")
        role = session.client("iam").create_role(RoleName="hwpipes-states", AssumeRolePolicyDocument="{}")["Role"]
        targets = Targets(function_arn="arn:aws:lambda:us-east-1:123456789012:function:f",
                          job_queue=settings.aws.batch_job_queue)  # fmt: skip
        services = build_services(
            settings, repos=SqliteStore(tmp_path / "pipelines.db"),
            placement=build_placement(settings, sync=ProcessExecutor.from_settings(settings), engine=runs),
            pipeline_engine=lambda bindings: StepFunctionsEngine(bindings, sfn, role["Arn"], targets), aws=aws,
        )  # fmt: skip
        bootstrap(services)
        counter = CallCounter(session)
        service = services.pipelines
        admin = Principal(None, None, frozenset({"admin"}))
        services.actions.register(admin, "proj_local", "development", stage(image_uri=IMAGE))
        action = services.actions.resolve("proj_local", "development", "stage").spec
        pipeline, _ = service.definitions.define(admin, "proj_local", "development", "batch", {"steps": [step("work")]})
        # Then the state machine names the executor's job definition, which the executor registered
        definition = json.loads(sfn.describe_state_machine(stateMachineArn=pipeline.engine_ref)["definition"])
        job_definition = definition["States"]["work"]["Parameters"]["JobDefinition"]
        assert job_definition == runs.definition_name("proj_local", action, "development")
        registered = session.client("batch").describe_job_definitions(jobDefinitionName=job_definition)
        assert registered["jobDefinitions"][0]["containerProperties"]["command"][-2:] == ["--run", "Ref::run_id"]
        assert pipeline.engine_ref.split(":stateMachine:")[1].startswith(settings.aws.resource_prefix + "-")
        # and a step's run prepared by the pipeline function is recorded for the job's adapter, not submitted
        started = service.executions.execute(admin, "proj_local", "development", "batch", {})
        counter.clear()
        run_id = json.loads(sfn.describe_execution(executionArn=started.engine_ref)["input"])["runs"]["s0"]
        service.steps.create_step_run(started, spec_of(pipeline), spec_of(pipeline).steps[0], run_id,
                                      submit=False)  # fmt: skip
        assert counter.count("batch", "SubmitJob") == 0
        stored = services.repos.runs.get_run(run_id)
        assert stored is not None and stored.status.value == "ENQUEUED" and stored.external_id is None
        services.close()
