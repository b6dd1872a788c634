"""The project task role's DynamoDB grant (template.yaml's ``TaskPolicy``) and what the container
side of a run really touches, kept in agreement.

A Batch job or ECS task runs with its project's task role; an action in the container could use
those credentials directly. The policy therefore limits ``dynamodb:LeadingKeys`` to the partition
keys the adapter needs. These tests play the container (:func:`hatchway.runtime.remote.run_attempt`, the
adapter's ``--run`` entry) against moto through a DynamoDB client of its own, record every
partition key and index it uses (botocore events, container side only), and check
each against the patterns parsed from the template, with the project substituted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest

from hatchway.aws.batch import BatchEngine
from hatchway.aws.clients import AwsClients
from hatchway.aws.ecs import EcsEngine
from hatchway.domain.runs import RunStatus
from hatchway.runtime.remote import RETRY_EXIT_CODE, run_attempt
from hatchway.services.container import ContainerAttempts
from hatchway.wiring import container_attempts, container_services
from tests.awsmock import REGION
from tests.functional.awsstack import (
    ACTION,
    ADMIN,
    ENV,
    P,
    Stack,
    batch_event,
    build_stack,
    ecs_event,
    submit,
)
from tests.functional.test_template import source

pytestmark = pytest.mark.aws

PROJECT_TAG = "${aws:PrincipalTag/hatchway-project}"


def table_grants(project: str) -> list[tuple[set[str], list[str], bool]]:
    """The task policy's DynamoDB statements for a role tagged with ``project``: their actions,
    their ``dynamodb:LeadingKeys`` patterns, and whether they reach the table's indexes."""
    statements = source()["Resources"]["TaskPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    grants = []
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if not any(action.startswith("dynamodb:") for action in actions):
            continue
        assert statement["Effect"] == "Allow"
        patterns = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        grants.append(
            (
                {action.removeprefix("dynamodb:") for action in actions},
                [pattern.replace(PROJECT_TAG, project) for pattern in patterns],
                any("/index/" in json.dumps(resource) for resource in resources),
            )
        )
    return grants


def permitted(operation: str, key: str, index: str | None, project: str) -> bool:
    """Whether some grant allows ``operation`` on partition ``key`` (of ``index``, if one)."""
    return any(
        operation in actions and like(key, patterns) and (index is None or indexes)
        for actions, patterns, indexes in table_grants(project)
    )


def like(key: str, patterns: list[str]) -> bool:
    """IAM's ``StringLike``: ``*`` is any run of characters, ``?`` one; nothing else is special."""
    return any(re.fullmatch(_like(pattern), key, re.DOTALL) for pattern in patterns)


def _like(pattern: str) -> str:
    return "".join({"*": ".*", "?": "."}.get(char, re.escape(char)) for char in pattern)


#: what IAM checks for each part of a transaction (DynamoDB's "Using IAM with transactions")
TRANSACTION_PARTS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


class Touched:
    """Every (IAM action, partition key, index) a DynamoDB client's calls need, from botocore's
    events (``before-parameter-build`` carries a call's own parameters, once per call)."""

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, str, str | None]] = []
        client.meta.events.register("before-parameter-build.dynamodb", self._seen)

    def _seen(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls += needs(model.name, params)


def needs(operation: str, params: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """The (IAM action, partition key, index) triples one API call is authorised by."""
    if operation == "TransactWriteItems":
        return [
            need
            for entry in params["TransactItems"]
            for kind, part in entry.items()
            for need in needs(TRANSACTION_PARTS[kind], part)
        ]
    if operation == "Query":
        index = params.get("IndexName")
        hash_key = "pk" if index is None else f"{index}pk"
        match = re.match(rf"\s*{hash_key}\s*=\s*(:\w+)", params["KeyConditionExpression"])
        assert match, f"cannot read the partition key of {params['KeyConditionExpression']!r}"
        return [(operation, params["ExpressionAttributeValues"][match.group(1)]["S"], index)]
    key = params.get("Key") or params.get("Item")
    assert key is not None, f"{operation} names no key; teach this test how it is authorised"
    return [(operation, key["pk"]["S"], None)]


def container_side(stack: Stack) -> tuple[ContainerAttempts, Touched]:
    """The host a container builds over its services (:func:`hatchway.wiring.container_services`:
    store, key, blobs from the settings, a process executor, no bootstrap), on clients of its own session."""
    aws = AwsClients(REGION, None, boto3.session.Session(region_name=REGION))
    touched = Touched(aws.client("dynamodb"))
    services = container_services(stack.settings, aws=aws)
    return container_attempts(services, services.placement.close, aws=aws), touched


def attempts(stack: Stack, engine: type[Any], scenario: str) -> list[tuple[str, int]]:
    """Start a run for ``scenario``; its id and the exit code of each container attempt it takes."""
    services = stack.services
    services.actions.register(ADMIN, P, ENV, ACTION)
    if scenario == "success with a secret":
        token = services.tenants.encrypt(ADMIN, P, ENV, "s3cret")
        run_id, _ = submit(stack, who="w", **{"#token": token})
        return [(run_id, 0)]
    if scenario == "an older version of the action":
        run_id, _ = submit(stack, who="w")
        services.actions.register(ADMIN, P, ENV, {**ACTION, "timeout": 20})
        return [(run_id, 0)]
    if scenario == "application error, retried":
        run_id, _ = submit(stack, who="w", exit="3")
        return [(run_id, RETRY_EXIT_CODE), (run_id, 1)]
    if scenario == "user error":
        run_id, _ = submit(stack, who="u", exit="1")
        return [(run_id, 1)]
    assert scenario == "cancelled while its container starts"
    run_id, external = submit(stack, who="w")
    started = (
        batch_event(run_id, external, "RUNNING") if engine is BatchEngine else ecs_event(run_id, external, "RUNNING")
    )
    services.remote.handle_event(started)
    assert services.runs.cancel(ADMIN, P, ENV, run_id).status == RunStatus.TERMINATING
    return [(run_id, 1)]


SCENARIOS = [
    "success with a secret",
    "an older version of the action",
    "application error, retried",
    "user error",
    "cancelled while its container starts",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("engine", [BatchEngine, EcsEngine], ids=["batch", "ecs"])
def test_the_container_touches_only_keys_its_task_role_may(
    scenario: str, engine: type[Any], tmp_path: Path, infrastructure: dict[str, Any]
) -> None:
    stack = build_stack(tmp_path, infrastructure, engine)
    planned = attempts(stack, engine, scenario)
    # Given the container side on a client of its own (the API side above is not recorded)
    inside, touched = container_side(stack)
    try:
        # When each attempt runs in its container
        for number, (run_id, expected) in enumerate(planned, start=1):
            assert run_attempt(inside, run_id, f"{engine.name}/job/{number}") == expected
    finally:
        inside.close()
    run = stack.services.repos.runs.get_run(planned[0][0])
    assert run is not None and run.is_terminal
    # Then the task role's policy allows every item it read or wrote, and no index is used
    assert touched.calls, "the container made no DynamoDB call"
    refused = sorted({need for need in touched.calls if not permitted(*need, project=P)})
    assert not refused, f"the task policy refuses {refused}"
    assert {index for _, _, index in touched.calls} == {None}


def test_the_task_policy_refuses_what_is_not_the_containers() -> None:
    # no index at all: the container never queries one
    assert not any(indexes for _, _, indexes in table_grants(P))
    # other tenants' actions, tokens, projects, idempotency keys, documents, pipelines: refused
    for operation in ("GetItem", "PutItem", "UpdateItem", "Query", "ConditionCheckItem"):
        for key in (f"TOKEN#{'a' * 12}", f"PROJECT#{P}", "PROJECT#other", f"ACTIONS#other#{ENV}",
                    f"ACTION#other#{ENV}#echo", f"ACTION#{P}x#{ENV}#echo", f"IDEM#{'0' * 64}",
                    f"DOC#{P}#{ENV}#kind", "EXEC#x", f"PIPELINES#{P}#{ENV}"):  # fmt: skip
            assert not permitted(operation, key, None, P), (operation, key)
    # its own project's actions: read, never written
    for key in (f"ACTIONS#{P}#{ENV}", f"ACTION#{P}#{ENV}#echo"):
        assert permitted("GetItem", key, None, P)
        for operation in ("PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem"):
            assert not permitted(operation, key, None, P), (operation, key)
    # runs: read and written (not deleted), never through an index
    assert permitted("PutItem", "RUN#run_1", None, P) and not permitted("DeleteItem", "RUN#run_1", None, P)
    assert not permitted("Query", "RUNS#proj#env", "gsi1", P)
