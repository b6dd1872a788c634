"""The Lambda executor on moto: what registration creates for sync actions, and sync calls through
the container Lambda and the real runtime adapter (Lambda's failures mapped to the contract,
call counts).

moto runs no containers: the Lambda's answer is made by calling the real runtime adapter with the
exact payload the gateway sent (what awslambdaric would do in the function).
"""

from __future__ import annotations

from typing import Any

import pytest

from hatchway.api.present import sync_body
from hatchway.aws.aws_lambda import LambdaExecutor
from hatchway.domain.runs import RunRequest, RunStatus
from hatchway.errors import (
    ActionTimeout,
    ActionUserError,
    ExecutionFailed,
    NotFound,
    Unavailable,
    ValidationFailed,
)
from tests.awsmock import answer_instead, lambda_error, lambda_function_error
from tests.functional.awsstack import ACTION, ADMIN, ENV, P, Stack, watch

pytestmark = pytest.mark.aws


# ---------------------------------------------------------------------------------------------
# registration


def test_an_action_without_sync_actions_gets_no_function(batch: Stack) -> None:
    batch.services.actions.register(ADMIN, P, ENV, {**ACTION, "sync_actions": []})
    functions = batch.client("lambda").list_functions()["Functions"]
    assert [f for f in functions if f["FunctionName"].startswith(batch.settings.aws.resource_prefix)] == []


# ---------------------------------------------------------------------------------------------
# sync calls through the container Lambda


def test_a_sync_call_answers_what_the_runtime_adapter_produced(batch: Stack) -> None:
    services = batch.services
    services.actions.register(ADMIN, P, ENV, ACTION)
    token = services.tenants.encrypt(ADMIN, P, ENV, "tok-s3cret-value")
    # When a sync action is called (parameters full of shell metacharacters)
    answer = sync_body(
        services.runs.call_sync(ADMIN, P, ENV, "echo", "hello", RunRequest({"who": "a; $(x) `y`", "#token": token}))
    )
    # Then the adapter's stdout JSON is the answer and stderr lines are the log, secrets hidden
    assert answer["ret"] == {"sync": "a; $(x) `y`"}
    assert [e["msg"] for e in answer["os"]] == ["secret is [hidden]"]
    run = services.repos.runs.get_run(answer["run_id"])
    assert run is not None and run.status == RunStatus.SUCCESSFUL and run.mode.value == "sync"
    assert [e.msg for e in services.repos.runs.read_logs(run.id).items] == ["secret is [hidden]"]


def test_a_sync_user_error_through_lambda_is_a_400(batch: Stack) -> None:
    batch.services.actions.register(ADMIN, P, ENV, ACTION)
    with pytest.raises(ActionUserError) as failed:
        sync_body(
            batch.services.runs.call_sync(ADMIN, P, ENV, "echo", "hello", RunRequest({"who": "zed", "exit": "1"}))
        )
    assert failed.value.message == "bad input: zed"
    assert batch.services.repos.runs.get_run(failed.value.run_id).status == RunStatus.FAILED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("status", "parsed", "error"),
    [
        (200, lambda_function_error({"errorMessage": "Task timed out after 30.00 seconds"}), ActionTimeout),
        # the runtime adapter never answered: the platform's failure, or out of memory - named as such
        (200, lambda_function_error({"errorType": "Runtime.ExitError", "errorMessage": "exited"}), ExecutionFailed),
        (200, lambda_function_error({"errorMessage": "Runtime exited with error: signal: killed"}), ExecutionFailed),
        (429, lambda_error("TooManyRequestsException"), Unavailable),
        (409, lambda_error("ResourceConflictException", 409), Unavailable),
        (500, lambda_error("ServiceException", 500), Unavailable),
    ],
)
def test_lambda_failures_map_to_the_contract(
    batch: Stack, status: int, parsed: dict[str, Any], error: type[Exception]
) -> None:
    services = batch.services
    services.actions.register(ADMIN, P, ENV, ACTION)
    batch.counter.hooks.clear()
    answer_instead(services.placement.sync.client, "Invoke", status, parsed)  # type: ignore[attr-defined]
    with pytest.raises(error):
        sync_body(services.runs.call_sync(ADMIN, P, ENV, "echo", "hello", RunRequest({"who": "w"})))


def test_a_missing_function_is_created_again_and_the_call_answers_503(batch: Stack) -> None:
    services = batch.services
    services.actions.register(ADMIN, P, ENV, ACTION)
    executor = services.placement.sync
    assert isinstance(executor, LambdaExecutor)
    name = executor.function_name(P, services.actions.resolve(P, ENV, "echo").spec)
    lam = batch.client("lambda")
    lam.delete_function(FunctionName=name)
    batch.counter.hooks.clear()
    answer_instead(executor.client, "Invoke", 404, lambda_error("ResourceNotFoundException", 404))
    with pytest.raises(Unavailable):
        sync_body(services.runs.call_sync(ADMIN, P, ENV, "echo", "hello", RunRequest({"who": "w"})))
    assert lam.get_function_configuration(FunctionName=name)["PackageType"] == "Image"


def test_a_sync_call_makes_at_most_two_aws_calls_besides_the_invoke(batch: Stack) -> None:
    services = batch.services
    services.actions.register(ADMIN, P, ENV, ACTION)
    sync_body(services.runs.call_sync(ADMIN, P, ENV, "echo", "hello", RunRequest({"who": "warm-up"})))
    for _ in range(3):
        batch.counter.clear()
        sync_body(services.runs.call_sync(ADMIN, P, ENV, "echo", "hello", RunRequest({"who": "w"})))
        calls = batch.counter.summary()
        assert calls.pop("lambda.Invoke") == 1
        # one read resolves the action, one transaction records the finished run and its log
        assert sum(calls.values()) <= 2, calls
        assert calls == {"dynamodb.GetItem": 1, "dynamodb.TransactWriteItems": 1}


def test_a_function_made_under_the_old_name_is_left_alone_and_the_action_gets_one_under_act(batch: Stack) -> None:
    from hatchway.aws.aws_lambda import resource_name

    services = batch.services
    services.actions.register(ADMIN, P, ENV, ACTION)
    executor = services.placement.sync
    assert isinstance(executor, LambdaExecutor)
    spec = services.actions.resolve(P, ENV, "echo").spec
    prefix = batch.settings.aws.resource_prefix
    new = executor.function_name(P, spec)
    assert new.startswith(f"{prefix}-act-echo-")
    # Given a deployment from before the action prefix: the version's function has the old name
    # (<prefix>-<action>-<key>) and none under the new one
    lam = batch.client("lambda")
    old = resource_name(prefix, P, spec, 64)
    config = lam.get_function_configuration(FunctionName=new)
    lam.create_function(
        FunctionName=old, PackageType="Image", Code={"ImageUri": ACTION["image_uri"]}, Role=config["Role"]
    )
    lam.delete_function(FunctionName=new)
    # When the upgraded gateway is called: Lambda knows no function of the new name
    batch.counter.hooks.clear()
    answer_instead(executor.client, "Invoke", 404, lambda_error("ResourceNotFoundException", 404))
    seen: list[str] = []
    batch.counter.hooks.append(lambda _, operation, params: seen.append(f"{operation} {params.get('FunctionName')}"))
    with pytest.raises(Unavailable):
        sync_body(services.runs.call_sync(ADMIN, P, ENV, "echo", "hello", RunRequest({"who": "w"})))
    # Then the gateway recreates the function under the new name (the call answers 503) and never
    # touches the old one: the API role may no longer reach it, it is for the operator to delete
    assert lam.get_function_configuration(FunctionName=new)["PackageType"] == "Image"
    assert [call for call in seen if old in call] == []
    assert lam.get_function_configuration(FunctionName=old)["FunctionName"] == old


def test_an_action_function_logs_to_the_stacks_action_group_and_gets_its_reserved_concurrency(batch: Stack) -> None:
    created = watch(batch, "CreateFunction")
    # When a version whose action.json reserves 5 concurrent executions is registered
    batch.services.actions.register(ADMIN, P, ENV, {**ACTION, "metadata": {"reserved_concurrency": 5}})
    # Then its function logs to the group of all action functions (template.yaml: ActionLogGroup, with retention)
    [params] = created
    assert params["LoggingConfig"] == {"LogGroup": f"/{batch.settings.aws.resource_prefix}/actions"}
    # and Lambda holds 5 executions for it, and lets it use no more
    concurrency = batch.client("lambda").get_function_concurrency(FunctionName=params["FunctionName"])
    assert concurrency["ReservedConcurrentExecutions"] == 5


@pytest.mark.parametrize("value", [-1, 1.5, "10", True, 10**6])
def test_a_reserved_concurrency_that_is_not_a_count_is_a_422_and_nothing_is_made(batch: Stack, value: Any) -> None:
    with pytest.raises(ValidationFailed) as refused:
        batch.services.actions.register(ADMIN, P, ENV, {**ACTION, "metadata": {"reserved_concurrency": value}})
    assert refused.value.details[0]["loc"] == ["body", "metadata", "reserved_concurrency"]
    functions = batch.client("lambda").list_functions()["Functions"]
    assert [f for f in functions if f["FunctionName"].startswith(batch.settings.aws.resource_prefix)] == []


def test_a_reserved_concurrency_lambda_cannot_grant_is_a_422(batch: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an account whose concurrency limit is 1000 (Lambda keeps 100 of it unreserved)
    monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", "1000")
    # When an action asks for 950
    with pytest.raises(ValidationFailed) as refused:
        batch.services.actions.register(ADMIN, P, ENV, {**ACTION, "metadata": {"reserved_concurrency": 950}})
    # Then the registration is refused with a message that says what to do, and nothing is stored
    assert "lower it" in refused.value.message
    assert refused.value.details[0]["loc"] == ["body", "metadata", "reserved_concurrency"]
    with pytest.raises(NotFound):
        batch.services.actions.resolve(P, ENV, "echo")
