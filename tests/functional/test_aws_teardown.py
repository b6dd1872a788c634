"""What the gateway makes on AWS at run time, awaited and removed (issue 17, item 12), on moto:
a new function is waited for until Lambda has it Active; deleting an action removes its function
and job or task definitions; ``hatchway aws teardown`` finds everything made under the deployment's
prefix - and nothing else - and removes it."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from moto.awslambda_simple.models import lambda_simple_backends

from hatchway.api.present import sync_body
from hatchway.aws.aws_lambda import LambdaExecutor
from hatchway.domain.runs import RunRequest
from hatchway.errors import ExecutionFailed
from hatchway.wiring import aws_teardown
from tests.awsmock import ACCOUNT, REGION, answer_instead
from tests.functional.awsstack import ACTION, ADMIN, ENV, P, Stack
from tests.helpers import wait_until

pytestmark = pytest.mark.aws


POLICY = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}'


def function_of(stack: Stack) -> str:
    executor = stack.services.placement.sync
    assert isinstance(executor, LambdaExecutor)
    return executor.function_name(P, stack.services.actions.resolve(P, ENV, "echo").spec)


def set_state(name: str, state: str, reason: str | None = None) -> None:
    """What Lambda reports of the function (moto makes every function Active at once)."""
    function = lambda_simple_backends[ACCOUNT][REGION].get_function(name)
    function.state = state
    if reason is not None:
        function.state_reason = reason


def call(stack: Stack) -> dict[str, Any]:
    return sync_body(stack.services.runs.call_sync(ADMIN, P, ENV, "echo", "hello", RunRequest({"who": "w"})))


def active_definitions(stack: Stack) -> list[str]:
    prefix = stack.settings.aws.resource_prefix
    found = stack.client("batch").describe_job_definitions(status="ACTIVE")["jobDefinitions"]
    return [d["jobDefinitionName"] for d in found if d["jobDefinitionName"].startswith(prefix)]


# ---------------------------------------------------------------------------------------------
# a new function is awaited until Active


def test_the_first_call_of_a_new_version_waits_until_lambda_has_its_function_active(batch: Stack) -> None:
    # Given a version whose function Lambda is still creating
    batch.services.actions.register(ADMIN, P, ENV, ACTION)
    name = function_of(batch)
    set_state(name, "Pending")
    batch.counter.clear()
    answers: list[dict[str, Any]] = []
    caller = threading.Thread(target=lambda: answers.append(call(batch)))
    # When it is called
    caller.start()
    # Then the gateway looks at the function, and does not invoke it while it is Pending
    wait_until(lambda: batch.counter.count("lambda", "GetFunctionConfiguration") >= 2, timeout=10)
    assert batch.counter.count("lambda", "Invoke") == 0
    # And once it is Active, the call goes through
    set_state(name, "Active")
    caller.join(timeout=20)
    assert answers and answers[0]["ret"] == {"sync": "w"}
    assert batch.counter.count("lambda", "Invoke") == 1
    # And the next call does not look again
    batch.counter.clear()
    call(batch)
    assert batch.counter.count("lambda", "GetFunctionConfiguration") == 0


def test_a_function_still_pending_when_the_call_runs_out_of_time_is_unavailable(batch: Stack) -> None:
    batch.services.actions.register(ADMIN, P, ENV, ACTION)
    name = function_of(batch)
    set_state(name, "Pending")
    executor = batch.services.placement.sync
    assert isinstance(executor, LambdaExecutor)
    # (the time a call has left, made short: a sync call's own is up to 30 s)
    waited = executor._await_active(name, 0.6)
    assert waited is not None and waited.unavailable is not None
    assert "still being created" in waited.unavailable
    assert batch.counter.count("lambda", "GetFunctionConfiguration") >= 2


def test_a_function_lambda_could_not_create_is_a_platform_error_with_lambdas_reason(batch: Stack) -> None:
    batch.services.actions.register(ADMIN, P, ENV, ACTION)
    executor = batch.services.placement.sync
    assert isinstance(executor, LambdaExecutor)
    # (moto has no Failed state: Lambda's answer, as its API reference gives it)
    failed_state = {"FunctionName": function_of(batch), "State": "Failed", "StateReasonCode": "ImageNotFound",
                    "StateReason": "The image manifest or layer media type is not supported."}  # fmt: skip
    answer_instead(executor.client, "GetFunctionConfiguration", 200, failed_state)
    with pytest.raises(ExecutionFailed) as failed:
        call(batch)
    # the answer says what failed; Lambda's own words stay in the run's record (and the log)
    assert "AWS Lambda could not create this action version's function" in failed.value.message
    run = batch.services.repos.runs.get_run(failed.value.run_id)  # type: ignore[arg-type]
    assert run is not None and run.error is not None and "media type is not supported" in run.error.message
    assert batch.counter.count("lambda", "Invoke") == 0


# ---------------------------------------------------------------------------------------------
# deleting an action removes what it had


def test_deleting_an_action_removes_its_function_and_job_definitions_and_it_can_come_back(batch: Stack) -> None:
    services = batch.services
    services.actions.register(ADMIN, P, ENV, ACTION)
    first = function_of(batch)
    services.actions.register(ADMIN, P, ENV, {**ACTION, "timeout": 11})  # a second version
    second = function_of(batch)
    lam = batch.client("lambda")
    for name in (first, second):
        assert lam.get_function_configuration(FunctionName=name)["FunctionName"] == name
    assert len(active_definitions(batch)) == 2
    # When the action is deleted
    services.actions.delete(ADMIN, P, ENV, "echo")
    # Then its versions' functions and job definitions are gone
    prefix = batch.settings.aws.resource_prefix
    assert [f for f in lam.list_functions()["Functions"] if f["FunctionName"].startswith(prefix)] == []
    assert active_definitions(batch) == []
    # And registering it again makes them again, and it runs
    services.actions.register(ADMIN, P, ENV, ACTION)
    assert lam.get_function_configuration(FunctionName=first)["State"] == "Active"
    assert len(active_definitions(batch)) == 1
    assert call(batch)["ret"] == {"sync": "w"}


def test_deleting_an_action_deregisters_its_task_definitions(ecs: Stack) -> None:
    ecs.services.actions.register(ADMIN, P, ENV, ACTION)
    client = ecs.client("ecs")
    engine = ecs.services.placement.engine
    assert engine is not None
    family = engine.definition_name(P, ecs.services.actions.resolve(P, ENV, "echo").spec, ENV)
    assert client.list_task_definitions(familyPrefix=family, status="ACTIVE")["taskDefinitionArns"]
    found = aws_teardown(ecs.settings, engine.aws).find()  # type: ignore[attr-defined]
    assert [item.name for item in found if item.kind == "ECS task definition"] == [f"{family}:1"]
    ecs.services.actions.delete(ADMIN, P, ENV, "echo")
    assert client.list_task_definitions(familyPrefix=family, status="ACTIVE")["taskDefinitionArns"] == []
    # and teardown finds nothing left of it
    assert [item for item in aws_teardown(ecs.settings, engine.aws).find() if "task" in item.kind] == []  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# hatchway aws teardown


def test_teardown_removes_what_was_made_at_run_time_under_the_prefix_and_nothing_else(batch: Stack) -> None:
    services, settings = batch.services, batch.settings
    prefix = settings.aws.resource_prefix
    services.actions.register(ADMIN, P, ENV, ACTION)
    lam = batch.client("lambda")
    made = lam.get_function_configuration(FunctionName=function_of(batch))
    # Given functions that are not the gateway's: another deployment's, and one named alike by hand
    for other, tags in ((f"x{prefix}-act-other", {"hatchway:project": P}), (f"{prefix}-act-by-hand", {})):
        lam.create_function(
            FunctionName=other,
            PackageType="Image",
            Code={"ImageUri": ACTION["image_uri"]},
            Role=made["Role"],
            Tags=tags,
        )
    teardown = aws_teardown(settings, services.placement.sync.aws)  # type: ignore[attr-defined]
    found = teardown.find()
    kinds = sorted(item.kind for item in found)
    assert kinds == ["Batch job definition", "IAM role", "Lambda function"]  # the project's role too
    # When it runs
    done = teardown.remove(found)
    # Then those are gone, and the others stay
    assert done.failed == [] and len(done.removed) == 3
    names = {f["FunctionName"] for f in lam.list_functions()["Functions"]}
    assert made["FunctionName"] not in names
    assert {f"x{prefix}-act-other", f"{prefix}-act-by-hand"} <= names
    assert active_definitions(batch) == []
    # And a second run finds nothing
    assert teardown.find() == []


def test_teardown_removes_the_project_roles_with_their_policies(batch: Stack) -> None:
    iam = batch.client("iam")
    prefix = batch.settings.aws.resource_prefix
    policy = iam.create_policy(PolicyName=f"{prefix}-tp", PolicyDocument=POLICY)
    role = f"{prefix}-task-proj_x"
    iam.create_role(RoleName=role, Path=f"/{prefix}/", AssumeRolePolicyDocument="{}",
                    Tags=[{"Key": "hatchway-project", "Value": "proj_x"}])  # fmt: skip
    iam.attach_role_policy(RoleName=role, PolicyArn=policy["Policy"]["Arn"])
    iam.put_role_policy(RoleName=role, PolicyName="inline", PolicyDocument=POLICY)
    iam.create_role(RoleName=f"{prefix}-task-untagged", Path=f"/{prefix}/", AssumeRolePolicyDocument="{}")
    teardown = aws_teardown(batch.settings, batch.services.placement.sync.aws)  # type: ignore[attr-defined]
    found = [item for item in teardown.find() if item.kind == "IAM role"]
    assert [item.name for item in found] == [role]
    assert teardown.remove(found).failed == []
    assert [r["RoleName"] for r in iam.list_roles(PathPrefix=f"/{prefix}/")["Roles"]] == [f"{prefix}-task-untagged"]
