"""The Lambda executor on moto: what registration creates for sync actions, and sync calls through
the container Lambda and the real runtime adapter (Lambda's failures mapped to the contract,
call counts).

moto runs no containers: the Lambda's answer is made by calling the real runtime adapter with the
exact payload the gateway sent (what awslambdaric would do in the function).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from hatchway.api import create_app
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
from hatchway.runtime.contract import LAMBDA_RESPONSE_BYTES, encoded_size
from hatchway.server import http_event
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


# ---------------------------------------------------------------------------------------------
# Lambda's 6 MB response limit on both hops: the action function's answer, the API function's

#: prints ``lines`` stderr lines of ``width`` copies of ``char``, then a JSON answer of ``ret`` x's (or ``fill``)
BIG_SCRIPT = (
    "import json,os,sys\n"
    "p=json.load(open(os.environ['HATCHWAY_DATA_DIR']+'/config.json'))['parameters']\n"
    "for i in range(int(p['lines'])): print(f'{i:06d} '+p['char']*int(p['width']), file=sys.stderr)\n"
    "print('the last line', file=sys.stderr)\n"
    "print(json.dumps({'blob': p.get('fill','x')*int(p['ret'])}))\n"
)
BIG: dict[str, Any] = {
    **ACTION,
    "name": "big",
    "parameters": [{"name": name} for name in ("lines", "width", "char", "ret", "fill")],
    "container_parameters": {"entry_point": [sys.executable, "-c"], "command": [BIG_SCRIPT]},
}
TOKEN = "big-answers-admin-token"  # noqa: S105 - a test's bootstrap token


@pytest.fixture
def lambda_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto answers a function error for an answer over its approximation of Lambda's response limit
    (``sys.getsizeof(payload) > 6000000``); hold it to AWS's documented 6,291,556 bytes instead."""
    import types

    from moto.awslambda import responses

    def getsizeof(payload: str | bytes) -> int:
        return 6_000_000 if len(payload) <= LAMBDA_RESPONSE_BYTES else 6_000_001

    monkeypatch.setattr(responses, "sys", types.SimpleNamespace(getsizeof=getsizeof))


def api_call(stack: Stack, **parameters: str) -> dict[str, Any]:
    """The API function's answer to a sync call of the big action, as it leaves for API Gateway."""
    stack.services.auth.set_bootstrap_token(TOKEN)
    body = json.dumps({"parameters": parameters}).encode()
    headers = [(b"authorization", f"Bearer {TOKEN}".encode()), (b"content-type", b"application/json")]
    event = http_event("POST", f"/v1/projects/{P}/actions/big/sync/hello", "", headers, body)
    answer: dict[str, Any] = create_app(stack.services).resolve(event, None)
    return answer


def answered(stack: Stack, **parameters: str) -> dict[str, Any]:
    """The sync result of the big action through the API function, which fits Lambda's limit."""
    stack.services.actions.register(ADMIN, P, ENV, BIG)
    answer = api_call(stack, **parameters)
    assert encoded_size(answer) <= LAMBDA_RESPONSE_BYTES
    assert answer["statusCode"] == 200, answer["body"][:500]
    result: dict[str, Any] = json.loads(answer["body"])
    return result


def test_a_big_answer_with_a_full_log_answers_through_lambda(batch: Stack, lambda_limit: None) -> None:
    # Given a sync action that answers 5 MB and logs its whole 10 MiB allowance
    # When it is called through the API function
    result = answered(batch, lines="170", width="64000", char="y", ret="5000000")
    # Then both hops fit Lambda's response limit: the answer whole, the log cut with its marker
    assert result["ret"] == {"blob": "x" * 5_000_000}
    run_log = [e.msg for e in batch.services.repos.runs.read_logs(result["run_id"], 0, 1000).items]
    assert run_log[0].startswith("000000 ") and "the last line" in run_log
    assert any(m.startswith("log truncated:") and "Lambda's 6291556-byte limit" in m for m in run_log)


def test_a_log_that_grows_on_the_api_hop_is_cut_in_the_answer_and_kept_in_the_run(
    batch: Stack, lambda_limit: None
) -> None:
    # Given an answer whose log fits the action function's answer, but not the API function's
    # (quotes are escaped once more there: the body is a JSON string in the answer)
    result = answered(batch, lines="60", width="40000", char='"', ret="1000000")
    # Then the API function's answer fits, its log's middle left out and marked
    assert result["ret"] == {"blob": "x" * 1_000_000}
    messages = [entry["msg"] for entry in result["os"]]
    [marker] = [m for m in messages if m.startswith("log truncated:")]
    assert "left out of this answer to fit Lambda's 6291556-byte response" in marker
    assert messages[0].startswith("000000 ") and messages[-1] == "the last line"
    # while the run's log keeps every line
    stored = batch.services.repos.runs.read_logs(result["run_id"], 0, 1000).items
    assert len(stored) == 61 and not any(e.msg.startswith("log truncated") for e in stored)


def test_an_answer_no_lambda_can_give_is_an_application_error_that_says_so(batch: Stack, lambda_limit: None) -> None:
    # Given a valid answer within the contract's 6 MiB (4 MB) that a Lambda's answer cannot hold:
    # its quotes, escaped once more there, make it 8 MB
    batch.services.actions.register(ADMIN, P, ENV, BIG)
    answer = api_call(batch, lines="1", width="10", char="y", ret="2000000", fill='"')
    # Then the call is a 500 in the API's error shape, not a function error, and the run says why
    assert answer["statusCode"] == 500 and json.loads(answer["body"])["status"] == "error"
    [run] = batch.services.repos.runs.list_runs(P, ENV, 10, None, {}).items
    assert run.error is not None and run.error.kind == "application"
    assert run.error.message.startswith("sync output truncated: its 4000013 bytes do not fit in Lambda's")
