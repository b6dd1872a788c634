"""The project task role's DynamoDB and S3 grants (template.yaml's ``TaskPolicy``) and what the
container side of a run really touches, kept in agreement.

A Batch job or ECS task runs with its project's task role; an action in the container could use
those credentials directly. The policy therefore limits ``dynamodb:LeadingKeys`` to the partition
keys of the role's own project (``${aws:PrincipalTag/hatchway-project}``) and S3 to object keys
under its project. moto does not evaluate IAM, so these tests play the container
(:func:`hatchway.runtime.remote.run_attempt`, the adapter's ``--run`` entry) against moto through
clients of its own, record every partition key and index, and every object key and listed prefix,
it uses (botocore events, container side only), and check each against the patterns parsed from
the template, with the project substituted.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from hatchway.aws.batch import BatchEngine
from hatchway.aws.clients import AwsClients
from hatchway.aws.ecs import EcsEngine
from hatchway.domain.runs import RunRequest, RunStatus
from hatchway.runtime.remote import PROJECT_VARIABLE, RETRY_EXIT_CODE, run_attempt
from hatchway.services.container import ContainerAttempts
from hatchway.wiring import container_attempts, container_services
from tests.awsmock import REGION, container_settings
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
    submitted_environment,
)
from tests.functional.test_template import source

pytestmark = pytest.mark.aws

PROJECT_TAG = "${aws:PrincipalTag/hatchway-project}"
ENVIRONMENT_TAG = "${aws:PrincipalTag/hatchway-environment}"


def tagged(text: str, project: str, environment: str = ENV) -> str:
    """A pattern as IAM sees it for a role tagged with ``project`` and ``environment``."""
    text = text.replace(PROJECT_TAG, project).replace(ENVIRONMENT_TAG, environment)
    return text.replace("${!aws:PrincipalTag/hatchway-project}", project).replace(
        "${!aws:PrincipalTag/hatchway-environment}", environment
    )


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
                [tagged(pattern, project) for pattern in patterns],
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
        self.objects: TouchedObjects | None = None  # the S3 side, when recorded too
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


def s3_grants(project: str, bucket: str) -> list[tuple[set[str], list[str], list[str]]]:
    """The task policy's S3 statements for a role tagged with ``project``: their actions, resource
    ARNs and ``s3:prefix`` patterns (for ``ListBucket``), as IAM sees them."""
    statements = source()["Resources"]["TaskPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    arn = f"arn:aws:s3:::{bucket}"
    grants = []
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if not any(action.startswith("s3:") for action in actions):
            continue
        assert statement["Effect"] == "Allow"
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        arns = []
        for resource in resources:
            if resource == {"Fn::GetAtt": ["OutputsBucket", "Arn"]}:
                arns.append(arn)
                continue
            text = resource["Fn::Sub"]
            assert "${aws:" not in text, "in !Sub, IAM's variables are written ${!aws:...}"
            arns.append(tagged(text.replace("${OutputsBucket.Arn}", arn), project))
        prefixes = (statement.get("Condition") or {}).get("StringLike", {}).get("s3:prefix", [])
        grants.append(
            (
                {action.removeprefix("s3:") for action in actions},
                arns,
                [tagged(p, project) for p in prefixes],
            )
        )
    return grants


def s3_permitted(action: str, bucket: str, key: str, project: str, outputs: str = "outputs") -> bool:
    """Whether some grant allows ``action`` on object ``key`` of ``bucket`` (``ListBucket``: a
    listing of prefix ``key``) when the template's outputs bucket is named ``outputs``."""
    for actions, arns, prefixes in s3_grants(project, outputs):
        if action not in actions:
            continue
        if action == "ListBucket":
            if f"arn:aws:s3:::{bucket}" in arns and (not prefixes or like(key, prefixes)):
                return True
        elif like(f"arn:aws:s3:::{bucket}/{key}", arns):
            return True
    return False


#: the IAM action each S3 call needs (the multipart steps of an upload are PutObject's)
S3_ACTIONS = {
    "GetObject": "GetObject",
    "HeadObject": "GetObject",
    "PutObject": "PutObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "AbortMultipartUpload": "AbortMultipartUpload",
    "DeleteObject": "DeleteObject",
    "DeleteObjects": "DeleteObject",
    "ListObjectsV2": "ListBucket",
}


class TouchedObjects:
    """Every (IAM action, bucket, object key or listed prefix) an S3 client's calls need."""

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, str, str]] = []
        client.meta.events.register("before-parameter-build.s3", self._seen)

    def _seen(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        action = S3_ACTIONS.get(model.name)
        assert action is not None, f"the container called s3 {model.name}; teach this test how it is authorised"
        bucket = params["Bucket"]
        if model.name == "DeleteObjects":
            self.calls += [(action, bucket, each["Key"]) for each in params["Delete"]["Objects"]]
        elif action == "ListBucket":
            self.calls.append((action, bucket, params.get("Prefix", "")))
        else:
            self.calls.append((action, bucket, params["Key"]))


def container_side(stack: Stack, environment: dict[str, str]) -> tuple[ContainerAttempts, Touched]:
    """The host a container builds over its services (:func:`hatchway.wiring.container_services`:
    store, key, blobs from the settings and the variables of its job or task, a process executor,
    no bootstrap), on clients of its own session."""
    aws = AwsClients(REGION, None, boto3.session.Session(region_name=REGION))
    touched = Touched(aws.client("dynamodb"))
    touched.objects = TouchedObjects(aws.client("s3"))
    services = container_services(container_settings(stack.settings, environment), aws=aws)
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
    if scenario == "an input file, a stash, artifacts and a record too large for an item":
        services.actions.register(ADMIN, P, ENV, {**ACTION, "name": "files", "container_parameters": {
            "entry_point": [sys.executable, "-c"], "command": [FILES_SCRIPT]}})  # fmt: skip
        services.files.put(ADMIN, P, ENV, "data.csv", b"a,b\n1,2\n")
        request = RunRequest({"who": "w"}, inputs=["data.csv"], stash_id="NEW")
        run = services.runs.submit(ADMIN, P, ENV, "files", request)
        # the stash holds a file from an earlier run
        stash = services.repos.runs.get_run(run.id).options["stash_id"]  # type: ignore[union-attr]
        services.files.blobs.put_bytes(f"stashes/{P}/{ENV}/{stash}/note.txt", b"seen")
        return [(run.id, 0)]
    assert scenario == "cancelled while its container starts"
    run_id, external = submit(stack, who="w")
    started = (
        batch_event(run_id, external, "RUNNING") if engine is BatchEngine else ecs_event(run_id, external, "RUNNING")
    )
    services.remote.handle_event(started)
    assert services.runs.cancel(ADMIN, P, ENV, run_id).status == RunStatus.TERMINATING
    return [(run_id, 1)]


#: reads its input file and stash, leaves an artifact, a stash file and a result too large for an item
FILES_SCRIPT = (
    "import json,os\n"
    "d=os.environ['HATCHWAY_DATA_DIR']\n"
    "t=os.environ['TMPDIR']\n"
    "seen=open(t+'/note.txt').read()\n"
    "open(t+'/note.txt','w').write(seen+'!')\n"
    "os.makedirs(d+'/out/files',exist_ok=True)\n"
    "open(d+'/out/files/report.csv','w').write(open(d+'/in/data.csv').read())\n"
    "json.dump({'seen':seen,'big':os.urandom(400000).hex()},open(d+'/out/result.json','w'))\n"
)

SCENARIOS = [
    "an input file, a stash, artifacts and a record too large for an item",
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
    # Given the container side on a client of its own (the API side above is not recorded), with the
    # variables the engine gave the job or task
    environment = submitted_environment(stack, planned[0][0])
    assert environment[PROJECT_VARIABLE] == P
    inside, touched = container_side(stack, environment)
    try:
        # When each attempt runs in its container
        for number, (run_id, expected) in enumerate(planned, start=1):
            assert run_attempt(inside, run_id, f"{engine.name}/job/{number}", project_id=P) == expected
    finally:
        inside.close()
    run = stack.services.repos.runs.get_run(planned[0][0])
    assert run is not None and run.is_terminal
    # Then the task role's policy allows every item it read or wrote, and no index is used
    assert touched.calls, "the container made no DynamoDB call"
    refused = sorted({need for need in touched.calls if not permitted(*need, project=P)})
    assert not refused, f"the task policy refuses {refused}"
    assert {index for _, _, index in touched.calls} == {None}
    # and every object it read, wrote or listed, all of them under its project
    assert touched.objects is not None
    assert touched.objects.calls or scenario.startswith("cancelled"), "the container made no S3 call"
    outputs = stack.settings.aws.outputs_bucket
    refused_objects = sorted(
        {call for call in touched.objects.calls if not s3_permitted(*call, project=P, outputs=outputs)}
    )
    assert not refused_objects, f"the task policy refuses {refused_objects}"
    assert all(f"/{P}/" in f"/{key}" for _, _, key in touched.objects.calls)
    if scenario.startswith("an input file"):
        kinds = {(action, key.split("/")[0] if not key.startswith("blobs/") else key.split("/")[1])
                 for action, _, key in touched.objects.calls}  # fmt: skip
        assert {("GetObject", "files"), ("ListBucket", "stashes"), ("GetObject", "stashes"),
                ("PutObject", "stashes"), ("PutObject", "artifacts"), ("PutObject", "records"),
                ("PutObject", "runs")} <= kinds, kinds  # fmt: skip


def test_the_task_policy_refuses_what_is_not_the_containers() -> None:
    # no index at all: the container never queries one
    assert not any(indexes for _, _, indexes in table_grants(P))
    # other tenants' actions, tokens, projects, idempotency keys, documents, pipelines: refused
    for operation in ("GetItem", "PutItem", "UpdateItem", "Query", "ConditionCheckItem"):
        for key in (f"TOKEN#{'a' * 12}", f"PROJECT#{P}", "PROJECT#other", f"ACTIONS#other#{ENV}",
                    f"ACTION#other#{ENV}#echo", f"ACTION#{P}x#{ENV}#echo", f"IDEM#{'0' * 64}",
                    f"ACTIONS#{P}#production", f"ACTION#{P}#production#echo", f"ACTION#{P}#{ENV}x#echo",
                    f"ACTIONS#{P}#{ENV}x",
                    f"DOC#{P}#{ENV}#kind", "EXEC#x", f"PIPELINES#{P}#{ENV}"):  # fmt: skip
            assert not permitted(operation, key, None, P), (operation, key)
    # its own project's actions: read, never written
    for key in (f"ACTIONS#{P}#{ENV}", f"ACTION#{P}#{ENV}#echo"):
        assert permitted("GetItem", key, None, P)
        for operation in ("PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem"):
            assert not permitted(operation, key, None, P), (operation, key)
    # its own project's runs: read and written (not deleted), never through an index
    run = f"RUN#{P}#run_1"
    assert permitted("PutItem", run, None, P) and not permitted("DeleteItem", run, None, P)
    assert permitted("Query", run, None, P) and permitted("TransactWriteItems", run, None, P)
    assert not permitted("Query", "RUNS#proj#env", "gsi1", P)
    # another project's runs, or runs under the key they had before keys carried the project: refused
    for key in ("RUN#run_1", "RUN#proj_other#run_1", f"RUN#{P}x#run_1", f"RUN#x{P}#run_1", "RUN#*#run_1"):
        for operation in ("GetItem", "PutItem", "UpdateItem", "Query", "ConditionCheckItem"):
            assert not permitted(operation, key, None, P), (operation, key)


def test_the_task_policy_reaches_only_its_projects_objects() -> None:
    bucket = "outputs"
    # its own project's: runs' copies and records, artifacts and stashes written; files and specs read
    for key in (f"runs/{P}/run_1/attempt-1/run.json", f"records/runs/{P}/run_1/x.json.z",
                f"blobs/artifacts/{P}/run_1/files/a.txt", f"blobs/stashes/{P}/{ENV}/stash_1/a"):  # fmt: skip
        for action in ("GetObject", "PutObject", "DeleteObject", "AbortMultipartUpload"):
            assert s3_permitted(action, bucket, key, P), (action, key)
    for key in (f"blobs/files/{P}/{ENV}/data.csv", f"records/specs/{P}/abc.json.z"):
        assert s3_permitted("GetObject", bucket, key, P)
        assert not s3_permitted("PutObject", bucket, key, P) and not s3_permitted("DeleteObject", bucket, key, P)
    assert s3_permitted("ListBucket", bucket, f"blobs/stashes/{P}/{ENV}/stash_1/", P)
    # its project's files and stashes of another environment: refused (they are per environment)
    for key in (f"blobs/files/{P}/production/data.csv", f"blobs/stashes/{P}/production/stash_1/a",
                f"blobs/files/{P}/{ENV}x/data.csv"):  # fmt: skip
        for action in ("GetObject", "PutObject", "DeleteObject"):
            assert not s3_permitted(action, bucket, key, P), (action, key)
    assert not s3_permitted("ListBucket", bucket, f"blobs/stashes/{P}/production/stash_1/", P)
    # another project's objects, objects without a project, other kinds of objects: refused
    for other in ("proj_other", f"{P}x"):
        for key in (f"runs/{other}/run_1/attempt-1/run.json", f"records/runs/{other}/run_1/x.json.z",
                    f"blobs/artifacts/{other}/run_1/a", f"blobs/stashes/{other}/{ENV}/s/a",
                    f"blobs/files/{other}/{ENV}/data.csv", f"records/specs/{other}/abc.json.z"):  # fmt: skip
            for action in ("GetObject", "PutObject", "DeleteObject"):
                assert not s3_permitted(action, bucket, key, P), (action, key)
        assert not s3_permitted("ListBucket", bucket, f"blobs/stashes/{other}/{ENV}/s/", P)
    for key in ("runs/run_1/attempt-1/run.json", "records/runs/run_1/x.json.z", "blobs/artifacts/run_1/a",
                "records/specs/abc.json.z", "records/executions/e/x.json.z", "records/documents/d.json.z",
                f"blobs/files/{P}", "blobs/x", "other/key"):  # fmt: skip
        for action in ("GetObject", "PutObject", "DeleteObject"):
            assert not s3_permitted(action, bucket, key, P), (action, key)
    for prefix in ("", "blobs/", f"blobs/files/{P}/", "runs/"):
        assert not s3_permitted("ListBucket", bucket, prefix, P), prefix
    assert not s3_permitted("GetObject", "another-bucket", f"runs/{P}/run_1/attempt-1/run.json", P)
