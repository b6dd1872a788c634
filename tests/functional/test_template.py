"""template.yaml is tested data: it transforms offline, its handlers import under the environment it
gives them, that environment is one config.py reads, and its table is the store's schema."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from hatchway.config import ENV_VARS, Settings
from hatchway.store.dynamodb import TABLE_SCHEMA, TTL_ATTRIBUTE
from tests.helpers import REPO

TEMPLATE = REPO / "template.yaml"
EVENTS = REPO / "events"
FUNCTIONS = ["ApiFunction", "EventsFunction", "PipelineFunction", "RunnerFunction", "SweeperFunction"]


@cache
def source() -> dict[str, Any]:
    from cfnlint.decode import cfn_yaml

    loaded: dict[str, Any] = json.loads(json.dumps(cfn_yaml.load(str(TEMPLATE))))
    return loaded


@cache
def transformed() -> dict[str, Any]:
    """The template as CloudFormation sees it after the SAM transform (no AWS account involved)."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template = json.loads(json.dumps(source()))
    template["Globals"]["Function"]["CodeUri"] = "s3://artifacts/hatchway.zip"  # what `sam package` does
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name="us-east-1"))
    result: dict[str, Any] = translator.translate(
        template, parameter_values={"BootstrapToken": "t" * 32}, get_managed_policy_map=lambda: {}
    )
    return result


def functions() -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in transformed()["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }


def resolve(value: Any) -> str:
    """A plausible literal for an intrinsic: a parameter's default, else a name-shaped stand-in."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        parameter = source()["Parameters"].get(value["Ref"], {})
        return str(parameter.get("Default", f"ref-{value['Ref'].lower()}"))
    if "Fn::GetAtt" in value:
        name, attribute = value["Fn::GetAtt"]
        return f"arn:aws:test:us-east-1:123456789012:{name.lower()}-{attribute.lower()}"
    if "Fn::Join" in value:
        return "subnet-0a1b2c3d,subnet-4e5f6a7b"
    if "Fn::Sub" in value:
        return str(value["Fn::Sub"]).replace("${", "").replace("}", "")
    raise AssertionError(f"no stand-in for {value}")


def environment_of(properties: dict[str, Any]) -> dict[str, str]:
    variables = properties.get("Environment", {}).get("Variables", {})
    return {key: resolve(value) for key, value in variables.items()}


def test_the_template_transforms_offline_into_the_deployment() -> None:
    kinds = {resource["Type"] for resource in transformed()["Resources"].values()}
    for kind in (
        "AWS::Lambda::Function",
        "AWS::ApiGatewayV2::Api",
        "AWS::Events::Rule",
        "AWS::DynamoDB::Table",
        "AWS::KMS::Key",
        "AWS::S3::Bucket",
        "AWS::Batch::ComputeEnvironment",
        "AWS::Batch::JobQueue",
        "AWS::ECS::Cluster",
        "AWS::IAM::ManagedPolicy",
        "AWS::Logs::LogGroup",
    ):
        assert kind in kinds, kind
    assert set(functions()) == set(FUNCTIONS)
    assert "ApiUrl" in transformed()["Outputs"]


def test_state_changes_reach_the_events_function() -> None:
    rules = [
        r["Properties"]
        for r in transformed()["Resources"].values()
        if r["Type"] == "AWS::Events::Rule" and "detail-type" in r["Properties"].get("EventPattern", {})
    ]
    patterns = {tuple(rule["EventPattern"]["detail-type"]): rule["EventPattern"] for rule in rules}
    assert patterns[("Batch Job State Change",)]["source"] == ["aws.batch"]
    assert patterns[("ECS Task State Change",)]["source"] == ["aws.ecs"]
    assert patterns[("Step Functions Execution Status Change",)]["source"] == ["aws.states"]
    for rule in rules:
        pipelines = rule["EventPattern"]["source"] == ["aws.states"]
        target = "PipelineFunction" if pipelines else "EventsFunction"
        assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": [target, "Arn"]}


def test_the_sweeper_runs_every_minute_and_may_dispatch_to_the_runner() -> None:
    resources = transformed()["Resources"]
    [schedule] = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Events::Rule" and "ScheduleExpression" in r["Properties"]
    ]
    assert schedule["ScheduleExpression"] == "rate(1 minute)"
    assert schedule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["SweeperFunction", "Arn"]}
    # the API function and the sweeper name the runner; the runner is the function of that name
    runner = resolve(source()["Resources"]["RunnerFunction"]["Properties"]["FunctionName"])
    for name in ("ApiFunction", "SweeperFunction"):
        assert Settings.from_env(environment_of(functions()[name])).aws.runner_function == runner
    assert Settings.from_env(environment_of(functions()["RunnerFunction"])).aws.runner_function is None


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_is_traced_with_xray(name: str) -> None:
    properties = functions()[name]
    assert properties["TracingConfig"] == {"Mode": "Active"}
    assert Settings.from_env(environment_of(properties)).observability.tracing == "xray"
    # the transform grants the segment writes
    role = transformed()["Resources"][properties["Role"]["Fn::GetAtt"][0]]["Properties"]
    assert any("AWSXrayWriteOnlyAccess" in json.dumps(arn) for arn in role.get("ManagedPolicyArns", []))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_built_by_the_makefile_has_its_target(name: str) -> None:
    resource = source()["Resources"][name]
    assert resource["Metadata"]["BuildMethod"] == "makefile"
    targets = {
        target
        for line in (REPO / "Makefile").read_text().splitlines()
        if line.startswith("build-") and ":" in line
        for target in line.split(":", 1)[0].split()
    }
    assert f"build-{name}" in targets


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_environment_variable_is_one_config_reads(name: str) -> None:
    env = environment_of(functions()[name])
    assert env, f"{name} gets no environment"
    unknown = sorted(set(env) - set(ENV_VARS))
    assert not unknown, f"{name} gets variables config.py does not read: {unknown}"
    # and config accepts them as the template sets them
    settings = Settings.from_env(env)
    assert settings.backend == "aws" and settings.executors.sync_executor == "lambda"
    assert settings.executors.run_executor in ("batch", "ecs")
    if name == "ApiFunction":
        # API Gateway cuts an HTTP API request at 30 s; the sync limit leaves room to answer
        assert settings.sync.sync_timeout_seconds < 30 < functions()[name]["Timeout"]


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("run_executor", ["batch", "ecs"])
def test_every_handler_imports_with_its_deployed_environment(name: str, run_executor: str, tmp_path: Path) -> None:
    properties = functions()[name]
    module, _, attribute = properties["Handler"].rpartition(".")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HATCHWAY_", "AWS_"))}
    env.update(environment_of(properties))
    env.update(
        {
            "HATCHWAY_RUN_EXECUTOR": run_executor,
            "HATCHWAY_HOME": str(tmp_path),
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing may be called at import
        }
    )
    probe = (
        f"import importlib; m = importlib.import_module({module!r}); f = getattr(m, {attribute!r}); "
        "assert callable(f); from hatchway.wiring import lambda_services; s = lambda_services(); "
        "print(type(s.repos.runs).__name__, s.placement.describe())"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["DynamoDbRunRepo", "lambda", "(sync),", run_executor, "(runs)"]


def test_the_table_is_the_store_schema() -> None:
    table = source()["Resources"]["Table"]["Properties"]
    assert table["BillingMode"] == TABLE_SCHEMA["BillingMode"]
    assert table["KeySchema"] == TABLE_SCHEMA["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(TABLE_SCHEMA["AttributeDefinitions"], key=str)
    assert table["GlobalSecondaryIndexes"] == TABLE_SCHEMA["GlobalSecondaryIndexes"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}


def applies(statement: dict[str, Any], tags: dict[str, str], context: dict[str, str]) -> bool:
    """Whether a statement's conditions hold for a principal with ``tags`` decrypting under
    encryption ``context`` (the operators used here: Null, StringEquals, StringNotEquals; a
    policy variable is the principal's tag; a condition on a key the request lacks does not hold)."""
    request = {f"aws:PrincipalTag/{key}": value for key, value in tags.items()}
    request |= {f"kms:EncryptionContext:{key}": value for key, value in context.items()}

    def value(text: str) -> str | None:
        match = re.fullmatch(r"\$\{aws:PrincipalTag/([\w-]+)\}", text)
        return tags.get(match.group(1)) if match else text

    for operator, pairs in statement.get("Condition", {}).items():
        for key, expected in pairs.items():
            if operator == "Null":
                if (key not in request) != (expected == "true"):
                    return False
            elif operator in ("StringEquals", "StringNotEquals"):
                wanted = value(expected)
                if key not in request or wanted is None:
                    return False
                if (request[key] == wanted) != (operator == "StringEquals"):
                    return False
            else:
                raise AssertionError(f"teach this test {operator}")
    return True


def may_decrypt(tags: dict[str, str], context: dict[str, str]) -> bool:
    """A task role's kms:Decrypt of the secrets key: the task policy allows it and the key policy
    denies nothing (the role's permissions boundary is the task policy itself)."""
    resources = source()["Resources"]
    key_statements = resources["SecretsKey"]["Properties"]["KeyPolicy"]["Statement"]
    denied = any(s["Effect"] == "Deny" and s["Action"] == "kms:Decrypt" and applies(s, tags, context)
                 for s in key_statements)  # fmt: skip
    task = resources["TaskPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    allowed = any(s.get("Action") == "kms:Decrypt" and applies(s, tags, context) for s in task)
    return allowed and not denied


def test_project_roles_decrypt_only_their_projects_and_environments_secrets() -> None:
    role = {"hatchway-project": "proj_a", "hatchway-environment": "production"}
    own = {"project_id": "proj_a", "environment": "production", "action": "etl"}
    assert may_decrypt(role, own)
    assert not may_decrypt(role, {**own, "project_id": "proj_b"})
    assert not may_decrypt(role, {**own, "environment": "staging"})
    assert not may_decrypt(role, {"project_id": "proj_a"})  # no environment in the context
    assert not may_decrypt(role, {})
    # a project role without an environment tag (made before roles were per environment): nothing
    assert not may_decrypt({"hatchway-project": "proj_a"}, own)
    resources = source()["Resources"]
    # the key policy alone denies project roles any other context, whatever IAM policy they get
    key_statements = resources["SecretsKey"]["Properties"]["KeyPolicy"]["Statement"]
    denies = [s for s in key_statements if s["Effect"] == "Deny"]
    assert all(s["Action"] == "kms:Decrypt" and s["Principal"] == {"AWS": "*"} for s in denies)
    for context in ({**own, "project_id": "proj_b"}, {**own, "environment": "staging"}):
        assert any(applies(s, role, context) for s in denies), context
    assert any(applies(s, {"hatchway-project": "proj_a"}, own) for s in denies)
    # and never principals that are not project roles (the gateway's functions)
    assert not any(applies(s, {}, {"project_id": "proj_b", "environment": "x"}) for s in denies)
    # the gateway may create task roles only under its path and only with that policy as boundary
    api_statements = resources["ApiFunction"]["Properties"]["Policies"][-1]["Statement"]
    [create] = [s for s in api_statements if s["Sid"] == "ProjectTaskRoles"]
    assert create["Action"] == "iam:CreateRole"
    assert create["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": {"Ref": "TaskPolicy"}}}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_has_sample_events(name: str) -> None:
    samples = sorted((EVENTS / name).glob("*.json"))
    assert samples, f"events/{name}/ holds no sample event"
    for sample in samples:
        assert isinstance(json.loads(sample.read_text()), dict)


def task_policy_statements() -> dict[str, dict[str, Any]]:
    statements = source()["Resources"]["TaskPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    return {statement["Sid"]: statement for statement in statements}


def test_task_roles_reach_only_their_runs_and_their_projects_actions_in_the_table() -> None:
    # a run container holds its project's task role: whatever the action does with those
    # credentials must not reach tokens, projects or other tenants (test_task_policy.py checks
    # these patterns against the keys the container adapter really uses)
    project = "${aws:PrincipalTag/hatchway-project}"
    table_statements = [s for s in task_policy_statements().values() if "dynamodb:" in json.dumps(s["Action"])]
    leading_keys = {
        s["Sid"]: s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] for s in table_statements
    }
    environment = "${aws:PrincipalTag/hatchway-environment}"
    assert leading_keys == {
        "RunRecords": [f"RUN#{project}#*"],
        "ReadProjectActions": [f"ACTIONS#{project}#{environment}", f"ACTION#{project}#{environment}#*"],
    }
    assert task_policy_statements()["ReadProjectActions"]["Action"] == "dynamodb:GetItem"
    for statement in table_statements:
        assert statement["Resource"] == {"Fn::GetAtt": ["Table", "Arn"]}  # no index


def test_task_roles_reach_only_their_projects_objects_in_the_outputs_bucket() -> None:
    # every object grant names the project (the role's tag) right after the kind of object, and a
    # listing is limited to its project's stashes (test_task_policy.py matches the keys the container uses)
    s3_statements = [s for s in task_policy_statements().values() if "s3:" in json.dumps(s["Action"])]
    tag = "${!aws:PrincipalTag/hatchway-project}"
    environment = "${!aws:PrincipalTag/hatchway-environment}"
    objects = [r["Fn::Sub"] for s in s3_statements for r in s["Resource"] if isinstance(r, dict) and "Fn::Sub" in r]
    assert sorted(objects) == sorted(
        [
            f"${{OutputsBucket.Arn}}/{kind}/{tag}/*"
            for kind in ("runs", "records/runs", "blobs/artifacts", "records/specs")
        ]
        + [f"${{OutputsBucket.Arn}}/{kind}/{tag}/{environment}/*" for kind in ("blobs/stashes", "blobs/files")]
    )
    [listing] = [s for s in s3_statements if s["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {
        "StringLike": {
            "s3:prefix": [
                "blobs/stashes/${aws:PrincipalTag/hatchway-project}/${aws:PrincipalTag/hatchway-environment}/*"
            ]
        }
    }
    assert "runs/*" not in json.dumps(s3_statements) and '"RUN#*"' not in json.dumps(task_policy_statements())


def test_the_outputs_bucket_is_sse_kms_with_a_key_every_reader_may_use_through_s3_only() -> None:
    resources = source()["Resources"]
    # SSE-KMS with a key of its own: the secrets key's policy denies project task roles a decrypt
    # without their project_id context, which S3 does not send
    bucket = resources["OutputsBucket"]["Properties"]
    [rule] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule == {
        "ServerSideEncryptionByDefault": {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": {"Fn::GetAtt": ["OutputsKey", "Arn"]},
        },
        "BucketKeyEnabled": True,
    }
    # blob puts ask for the same key (the functions' environment names it)
    variables = source()["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["HATCHWAY_OUTPUTS_KMS_KEY_ID"] == {"Fn::GetAtt": ["OutputsKey", "Arn"]}
    # the key serves S3 alone: its policy denies any other use of it, to everyone
    via_s3 = {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}
    [deny] = [s for s in resources["OutputsKey"]["Properties"]["KeyPolicy"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Principal"] == {"AWS": "*"} and deny["Condition"] == {"StringNotEquals": via_s3}
    assert set(deny["Action"]) == {"kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"}
    # every role that reads the bucket may decrypt with it through S3, every writer also generate keys
    readers = {"EventsFunction", "SweeperFunction"}
    for name in FUNCTIONS:
        grant = function_statements(name)["OutputsKeyThroughS3"]
        assert grant["Resource"] == {"Fn::GetAtt": ["OutputsKey", "Arn"]} and grant["Condition"] == {
            "StringEquals": via_s3
        }
        assert actions_of(grant) == (["kms:Decrypt"] if name in readers else ["kms:Decrypt", "kms:GenerateDataKey"])
    task = task_policy_statements()
    assert actions_of(task["OutputsKeyThroughS3"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert task["OutputsKeyThroughS3"]["Condition"] == {"StringEquals": via_s3}
    # and no role needs the secrets key for S3: task roles decrypt with it only their project's secrets
    secrets_key_grants = {
        sid for sid, s in task.items() if "kms:" in json.dumps(s["Action"]) and "SecretsKey" in json.dumps(s)
    }
    assert secrets_key_grants == {"DecryptOwnProjectOnly", "DescribeKey"}


def function_statements(name: str) -> dict[str, dict[str, Any]]:
    """The inline statements of a function's policies, by Sid."""
    return {
        statement["Sid"]: statement
        for policy in source()["Resources"][name]["Properties"]["Policies"]
        if "Statement" in policy
        for statement in policy["Statement"]
    }


def actions_of(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def states_role_statements() -> dict[str, dict[str, Any]]:
    """The statements of the role the pipelines' state machines run as, by Sid."""
    policies = source()["Resources"]["PipelineStatesRole"]["Properties"]["Policies"]
    return {statement["Sid"]: statement for policy in policies for statement in policy["PolicyDocument"]["Statement"]}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_grants_are_scoped_to_the_deployment(name: str) -> None:
    assert_scoped(function_statements(name))


def test_the_pipeline_states_role_is_scoped_to_the_deployment() -> None:
    statements = states_role_statements()
    assert_scoped(statements)
    assert unconditioned(statements) == {"batch:DescribeJobs"}  # it takes no resource-level permission
    assert statements["BatchRuns"]["Resource"][0] == {"Ref": "JobQueue"}


def unconditioned(statements: dict[str, dict[str, Any]]) -> set[str]:
    """Actions granted on every resource without a condition."""
    return {
        action
        for statement in statements.values()
        if statement.get("Resource") == "*" and "Condition" not in statement
        for action in actions_of(statement)
    }


def assert_scoped(statements: dict[str, dict[str, Any]]) -> None:
    """Grants that start, stop, tag or define work reach only the deployment's cluster, queue and prefix."""
    for sid, statement in statements.items():
        actions = actions_of(statement)
        # no function changes an ECR repository's policy (Lambda pulls by the repository's own)
        assert not {"ecr:SetRepositoryPolicy", "ecr:GetRepositoryPolicy"} & set(actions), sid
        # ECS tasks are started and stopped only in the deployment's cluster
        if {"ecs:RunTask", "ecs:StopTask", "ecs:DescribeTasks"} & set(actions):
            assert statement["Condition"] == {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["Cluster", "Arn"]}}}, sid
        # tags only as resources are created, never on existing ones
        if "ecs:TagResource" in actions:
            assert actions == ["ecs:TagResource"], sid
            assert set(statement["Condition"]["StringEquals"]) == {"ecs:CreateAction"}, sid
        # Batch definitions are registered (and, for a deleted action, deregistered) only under the
        # deployment's prefix, jobs only cancelled
        if "batch:RegisterJobDefinition" in actions:
            assert set(actions) <= {"batch:RegisterJobDefinition", "batch:DeregisterJobDefinition"}, sid
            assert statement["Resource"]["Fn::Sub"].endswith(":job-definition/${ResourcePrefix}-*"), sid
        if "batch:TerminateJob" in actions and "batch:SubmitJob" not in actions:
            assert statement["Resource"]["Fn::Sub"].endswith(":job/*"), sid
        if "ecs:RegisterTaskDefinition" in actions:
            assert statement["Resource"]["Fn::Sub"].endswith(":task-definition/${ResourcePrefix}-*"), sid


def test_the_events_function_starts_tasks_only_in_the_cluster_and_cancels_only_jobs() -> None:
    statements = function_statements("EventsFunction")
    assert actions_of(statements["NextEcsAttempt"]) == ["ecs:RunTask", "ecs:StopTask"]
    assert "ArnEquals" in statements["NextEcsAttempt"]["Condition"]
    assert unconditioned(statements) == {"ecs:DescribeTaskDefinition"}  # it takes no resource-level permission


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_function_that_starts_ecs_tasks_can_register_a_missing_task_definition(name: str) -> None:
    # RunTask on a deregistered family falls back to registering it again (EcsEngine.submit), with its
    # tags: a function allowed the one must be allowed the other, or a retry dies of AccessDenied
    statements = list(function_statements(name).values())
    granted = {action for statement in statements for action in actions_of(statement)}
    if "ecs:RunTask" not in granted:
        pytest.skip(f"{name} starts no ECS task")
    assert {"ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition", "iam:PassRole"} <= granted
    tag_on_create = [s for s in statements if actions_of(s) == ["ecs:TagResource"]]
    assert tag_on_create and all(
        "RegisterTaskDefinition" in s["Condition"]["StringEquals"]["ecs:CreateAction"] for s in tag_on_create
    )


# ---------------------------------------------------------------------------------------------
# action functions apart from the gateway's own (issue 17, item 9)


def sub_with_defaults(value: Any) -> str:
    """A ``!Sub`` ARN pattern with the parameters' defaults and a sample account in place."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    for name, literal in (
        ("${AWS::Partition}", "aws"),
        ("${AWS::Region}", "us-east-1"),
        ("${AWS::AccountId}", "123456789012"),
        ("${ResourcePrefix}", "hatchway"),
    ):
        text = text.replace(name, literal)
    return str(text)


def gateway_function_arns() -> list[str]:
    names = [sub_with_defaults(source()["Resources"][name]["Properties"]["FunctionName"]) for name in FUNCTIONS]
    return [f"arn:aws:lambda:us-east-1:123456789012:function:{name}" for name in names]


def lambda_grants() -> list[tuple[str, str, list[str], list[str]]]:
    """(function, Sid, lambda actions, resource patterns) of every role's lambda: statement."""
    grants = []
    for name in FUNCTIONS:
        for sid, statement in function_statements(name).items():
            actions = [a for a in actions_of(statement) if a.startswith("lambda:")]
            if actions:
                resource = statement["Resource"]
                resources = resource if isinstance(resource, list) else [resource]
                grants.append((name, sid, actions, [sub_with_defaults(r) for r in resources]))
    return grants


def test_action_functions_have_a_prefix_of_their_own_and_only_it_is_granted() -> None:
    from fnmatch import fnmatchcase

    from hatchway.aws.aws_lambda import LambdaExecutor
    from hatchway.aws.clients import AwsClients
    from hatchway.domain.spec import ActionSpec

    # the API role creates, changes, tags and invokes action functions under <prefix>-act-* only
    [actions] = [resources for name, sid, _, resources in lambda_grants() if sid == "ActionFunctions"]
    assert actions == ["arn:aws:lambda:us-east-1:123456789012:function:hatchway-act-*"]
    # and the functions the gateway names for sync actions are what that grant names
    executor = LambdaExecutor(AwsClients("us-east-1", None), "arn:aws:iam::123456789012:role/r", "hatchway")
    for action in ("echo", "a" * 63, "x-api"):
        spec = ActionSpec.model_validate({"name": action, "image_uri": "i:1", "sync_actions": ["go"]})
        name = executor.function_name("proj_0123456789abcdef", spec)
        assert len(name) <= 64 and fnmatchcase(f"arn:aws:lambda:us-east-1:123456789012:function:{name}", actions[0])
    # no lambda: grant of any function reaches the gateway's own functions through a wildcard, and
    # none but an invoke names one exactly (the runner by the API and the sweeper)
    for name, sid, granted, resources in lambda_grants():
        for pattern in resources:
            reached = [arn for arn in gateway_function_arns() if fnmatchcase(arn, pattern)]
            if "*" in pattern:
                assert reached == [], (name, sid, pattern)
            else:
                assert granted == ["lambda:InvokeFunction"] and reached == [pattern], (name, sid, pattern)


@pytest.mark.parametrize(
    ("prefix", "allowed"),
    [
        ("hatchway", True),
        ("team-actions", True),
        ("acme-act2", True),
        ("hatchway-act", False),  # its api function would be hatchway-act-api: under hatchway's grant
        ("hatchway-act-b", False),
        ("Hatchway", False),
        ("h" * 25, False),
    ],
)
def test_no_resource_prefix_puts_a_stacks_functions_under_anothers_action_grant(prefix: str, allowed: bool) -> None:
    import re

    pattern = source()["Parameters"]["ResourcePrefix"]["AllowedPattern"]
    assert bool(re.match(pattern, prefix)) is allowed


# ---------------------------------------------------------------------------------------------
# IAM statements carry only condition keys their actions support (issue 17, item 10)

#: The service-specific condition keys each IAM action supports, from the IAM service authorization
#: reference ("Actions, resources, and condition keys for AWS Identity and Access Management (IAM)",
#: docs.aws.amazon.com/service-authorization/latest/reference/list_awsidentityandaccessmanagementiam.html),
#: read from its machine-readable copy (iann0036/iam-dataset, aws/iam_definition.json). aws:RequestTag,
#: aws:ResourceTag and aws:TagKeys are per action too; other aws:* keys are global.
IAM_ACTION_KEYS = {
    "iam:CreateRole": {
        "aws:RequestTag/*", "aws:ResourceTag/*", "aws:TagKeys", "iam:PermissionsBoundary",
        "iam:ResourceTag/*", "iam:RoleTemplateARN",
    },
    "iam:TagRole": {"aws:RequestTag/*", "aws:ResourceTag/*", "aws:TagKeys", "iam:ResourceTag/*", "iam:RoleTemplateARN"},
    "iam:AttachRolePolicy": {
        "aws:ResourceTag/*", "iam:PermissionsBoundary", "iam:PolicyARN", "iam:ResourceTag/*", "iam:RoleTemplateARN",
    },
    "iam:PutRolePolicy": {"aws:ResourceTag/*", "iam:PermissionsBoundary", "iam:ResourceTag/*", "iam:RoleTemplateARN"},
    "iam:PassRole": {"aws:ResourceTag/*", "iam:AssociatedResourceArn", "iam:PassedToService", "iam:ResourceTag/*"},
    "iam:GetRole": {"aws:ResourceTag/*", "iam:ResourceTag/*"},
}  # fmt: skip
PER_ACTION_GLOBAL_KEYS = ("aws:RequestTag/", "aws:ResourceTag/", "aws:TagKeys")


def every_statement() -> list[tuple[str, dict[str, Any]]]:
    """(where, statement) of every policy statement the template grants to a role."""
    found = []
    for name in FUNCTIONS:
        found += [(f"{name}/{sid}", statement) for sid, statement in function_statements(name).items()]
    found += [(f"PipelineStatesRole/{sid}", s) for sid, s in states_role_statements().items()]
    found += [(f"TaskPolicy/{sid}", s) for sid, s in task_policy_statements().items()]
    return found


def condition_keys(statement: dict[str, Any]) -> set[str]:
    keys = set()
    for block in statement.get("Condition", {}).values():
        for key in block:
            for tagged in ("aws:RequestTag/", "aws:ResourceTag/", "iam:ResourceTag/"):
                key = f"{tagged}*" if key.startswith(tagged) else key
            keys.add(key)
    return keys


def test_every_iam_statement_carries_only_condition_keys_its_actions_support() -> None:
    # a key an action's requests do not carry never matches: the grant would be an AccessDenied
    checked = 0
    for where, statement in every_statement():
        keys = {k for k in condition_keys(statement) if k.startswith("iam:") or k.startswith(PER_ACTION_GLOBAL_KEYS)}
        for action in actions_of(statement):
            if action.startswith("iam:"):
                assert action in IAM_ACTION_KEYS, f"{where}: add {action}'s keys from the reference"
                assert keys <= IAM_ACTION_KEYS[action], (where, action, keys - IAM_ACTION_KEYS[action])
                checked += 1
    assert checked >= 8


def test_project_task_roles_can_be_created_tagged_and_given_only_the_task_policy() -> None:
    from fnmatch import fnmatchcase

    from hatchway.aws.engines import ENVIRONMENT_TAG, PROJECT_TAG, task_role_name

    statements = function_statements("ApiFunction")
    granted = {
        action: statement for statement in statements.values() for action in actions_of(statement) if "iam:" in action
    }
    role = f"arn:aws:iam::123456789012:role/hatchway/{task_role_name('hatchway', 'proj_0123456789abcdef', 'prod')}"
    # CreateRole with Tags is authorized as CreateRole and as TagRole: both on the project roles
    for action in ("iam:CreateRole", "iam:TagRole", "iam:AttachRolePolicy", "iam:GetRole"):
        assert fnmatchcase(role, sub_with_defaults(granted[action]["Resource"])), action
    # CreateRole only with the task policy as boundary; AttachRolePolicy only that policy, onto such a role
    boundary = {"iam:PermissionsBoundary": {"Ref": "TaskPolicy"}}
    assert granted["iam:CreateRole"]["Condition"] == {"StringEquals": boundary}
    assert granted["iam:AttachRolePolicy"]["Condition"] == {
        "StringEquals": {**boundary, "iam:PolicyARN": {"Ref": "TaskPolicy"}}
    }
    # TagRole only the project and environment tags (the KMS key policy reads them), never under a
    # boundary condition
    assert granted["iam:TagRole"]["Condition"] == {
        "ForAllValues:StringEquals": {"aws:TagKeys": [PROJECT_TAG, ENVIRONMENT_TAG]}
    }
    for action in ("iam:CreateRole", "iam:TagRole", "iam:AttachRolePolicy"):
        assert actions_of(granted[action]) == [action], "one action per statement: its own condition keys"


# ---------------------------------------------------------------------------------------------
# operations: alarms, dead letters, API stage, concurrency, action logs (issue 17, item 11)


def resources_of(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in transformed()["Resources"].items() if r["Type"] == kind}


def alarm_metrics(alarm: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, metric, dimensions) of every metric an alarm reads."""
    if "MetricName" in alarm:
        return [(alarm["Namespace"], alarm["MetricName"], {d["Name"]: d["Value"] for d in alarm["Dimensions"]})]
    found = []
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
            found.append((metric["Namespace"], metric["MetricName"], dimensions))
    return found


def watched() -> set[tuple[str, str, str]]:
    """(namespace, metric, what) every alarm of the stack watches, ``what`` a logical id."""
    seen = set()
    for alarm in resources_of("AWS::CloudWatch::Alarm").values():
        for namespace, metric, dimensions in alarm_metrics(alarm):
            for value in dimensions.values():
                target = value.get("Ref") or value.get("Fn::GetAtt", [None])[0]
                seen.add((namespace, metric, target))
    return seen


def function_rules() -> dict[str, dict[str, Any]]:
    """The stack's EventBridge rules whose target is one of its functions."""
    return {
        name: rule
        for name, rule in resources_of("AWS::Events::Rule").items()
        if any("Function" in json.dumps(target["Arn"]) for target in rule["Targets"])
    }


def test_alarms_watch_the_api_the_functions_the_sweeper_the_event_deliveries_and_the_run_engines() -> None:
    seen = watched()
    assert ("AWS/ApiGateway", "5xx", "ServerlessHttpApi") in seen
    for name in ("ApiFunction", "RunnerFunction", "EventsFunction", "PipelineFunction", "SweeperFunction"):
        assert ("AWS/Lambda", "Errors", name) in seen, name
        assert ("AWS/Lambda", "Throttles", name) in seen, name
    assert len(function_rules()) == 4
    for rule in function_rules():
        assert ("AWS/Events", "FailedInvocations", rule) in seen, rule
    for queue in ("EventsDeadLetterQueue", "RunnerDeadLetterQueue"):
        assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", queue) in seen, queue
    assert ("AWS/Events", "MatchedEvents", "RunEngineFailuresRule") in seen
    # the sweeper's own alarm: a few failed minutely sweeps, not one
    sweeper = resources_of("AWS::CloudWatch::Alarm")["SweeperFailuresAlarm"]
    assert alarm_metrics(sweeper)[0][:2] == ("AWS/Lambda", "Errors") and sweeper["Threshold"] > 1


def test_every_alarm_notifies_the_optional_topic() -> None:
    assert source()["Parameters"]["AlarmTopicArn"]["Default"] == ""
    assert source()["Conditions"]["HasAlarmTopic"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    alarms = resources_of("AWS::CloudWatch::Alarm")
    assert len(alarms) >= 7
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == notify and alarm["OKActions"] == notify, name
        assert alarm["TreatMissingData"] == "notBreaching", name  # no data is no failure


def test_undelivered_events_and_runner_invocations_land_in_dead_letter_queues() -> None:
    resources = transformed()["Resources"]
    queue = {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}
    for name, rule in function_rules().items():
        [target] = rule["Targets"]
        assert target["DeadLetterConfig"] == {"Arn": queue}, name
    # EventBridge may send to the queue for these rules only
    [statement] = resources["EventsDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"} and statement["Action"] == "sqs:SendMessage"
    sources = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert sorted(s["Fn::GetAtt"][0] for s in sources) == sorted(function_rules())
    # a run id Lambda gave up invoking the runner with goes to the runner's queue
    [invoke_config] = resources_of("AWS::Lambda::EventInvokeConfig").values()
    assert invoke_config["FunctionName"] == {"Ref": "RunnerFunction"}
    assert invoke_config["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["RunnerDeadLetterQueue", "Arn"]
    }
    for name in ("EventsDeadLetterQueue", "RunnerDeadLetterQueue"):
        assert resources[name]["Properties"]["SqsManagedSseEnabled"] is True


def test_the_http_api_stage_is_throttled_and_logs_json_without_headers_or_query() -> None:
    [stage] = resources_of("AWS::ApiGatewayV2::Stage").values()
    assert stage["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
    }
    logs = stage["AccessLogSettings"]
    assert logs["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(logs["Format"])  # one JSON object per request
    assert {"requestId", "status", "method", "path", "ip", "integrationError"} <= set(fields)
    assert not [v for v in fields.values() if "header" in v.lower() or "querystring" in v.lower() or "body" in v]
    group = transformed()["Resources"]["ApiAccessLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_api_function_may_get_reserved_concurrency() -> None:
    parameter = source()["Parameters"]["ApiReservedConcurrency"]
    assert parameter["Default"] == 0  # none reserved: a new account's limit may leave nothing to reserve
    assert functions()["ApiFunction"]["ReservedConcurrentExecutions"] == {
        "Fn::If": ["HasApiReservedConcurrency", {"Ref": "ApiReservedConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert "lambda:PutFunctionConcurrency" in actions_of(function_statements("ApiFunction")["ActionFunctions"])


def test_the_api_function_may_remove_what_a_deleted_action_had_and_nothing_of_the_stack() -> None:
    # (issue 17, item 12: ActionService.delete releases each version's function and definitions)
    statements = function_statements("ApiFunction")
    assert "lambda:DeleteFunction" in actions_of(statements["ActionFunctions"])
    assert statements["ActionFunctions"]["Resource"]["Fn::Sub"].endswith(":function:${ResourcePrefix}-act-*")
    assert "batch:DeregisterJobDefinition" in actions_of(statements["Definitions"])
    # ECS's list and deregister of task definitions take no resource-level permission
    assert {"ecs:ListTaskDefinitions", "ecs:DeregisterTaskDefinition"} <= unconditioned(statements)
    deletes = {a for s in statements.values() for a in actions_of(s) if a.startswith("lambda:Delete")}
    assert deletes == {"lambda:DeleteFunction"}


def test_action_functions_log_to_the_stacks_group_with_its_retention() -> None:
    from hatchway.aws.aws_lambda import LambdaExecutor
    from hatchway.aws.clients import AwsClients

    group = source()["Resources"]["ActionLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    executor = LambdaExecutor(AwsClients("us-east-1", None), "arn:aws:iam::123456789012:role/r", "hatchway")
    assert sub_with_defaults(group["LogGroupName"]) == executor.log_group


def test_the_run_engine_failures_rule_leaves_out_the_gateways_own_cancels() -> None:
    import re

    rule = source()["Resources"]["RunEngineFailuresRule"]["Properties"]
    [excluded] = [
        branch["detail"]["statusReason"][0]["anything-but"]
        for branch in rule["EventPattern"]["$or"]
        if "anything-but" in json.dumps(branch)
    ]
    reasons = set()
    for path in (REPO / "src" / "hatchway").rglob("*.py"):
        reasons |= set(re.findall(r"\.terminate\(\s*[\w.()=, ]+?,\s*\"([^\"]+)\"\)", path.read_text()))
    assert reasons and set(excluded) == reasons


RUN_ENGINE_EVENTS = [
    # (why, event detail-type, detail, is a platform failure)
    ("image pull", "Batch Job State Change",
     {"status": "FAILED", "statusReason": "CannotPullContainerError: pull access denied", "container": {}}, True),
    ("no reason", "Batch Job State Change", {"status": "FAILED", "container": {}}, True),
    ("the action's exit 1", "Batch Job State Change",
     {"status": "FAILED", "statusReason": "Essential container in task exited", "container": {"exitCode": 1}}, False),
    ("a cancel", "Batch Job State Change",
     {"status": "FAILED", "statusReason": "cancelled through the hatchway API", "container": {}}, False),
    ("succeeded", "Batch Job State Change", {"status": "SUCCEEDED", "container": {"exitCode": 0}}, False),
    ("failed to start", "ECS Task State Change", {"lastStatus": "STOPPED", "stopCode": "TaskFailedToStart"}, True),
    ("spot", "ECS Task State Change", {"lastStatus": "STOPPED", "stopCode": "SpotInterruption"}, True),
    ("a stop", "ECS Task State Change", {"lastStatus": "STOPPED", "stopCode": "UserInitiated"}, False),
    ("the action's exit", "ECS Task State Change", {"lastStatus": "STOPPED", "stopCode": "EssentialContainerExited"},
     False),
]  # fmt: skip


@pytest.mark.aws
def test_the_run_engine_failures_rule_matches_platform_failures_only() -> None:
    from tests.awsmock import REGION, moto_in_process

    queue = "arn:aws:batch:us-east-1:123456789012:job-queue/hatchway-runs"
    cluster = "arn:aws:ecs:us-east-1:123456789012:cluster/hatchway-runs"
    pattern = json.dumps(source()["Resources"]["RunEngineFailuresRule"]["Properties"]["EventPattern"])
    pattern = pattern.replace('{"Ref": "JobQueue"}', json.dumps(queue))
    pattern = pattern.replace('{"Fn::GetAtt": ["Cluster", "Arn"]}', json.dumps(cluster))
    with moto_in_process():
        import boto3

        # the rule as deployed, delivering to a queue instead of the log group
        events, sqs = boto3.client("events", region_name=REGION), boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="run-engine-failures")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="run-engine-failures", EventPattern=pattern)
        events.put_targets(Rule="run-engine-failures", Targets=[{"Id": "q", "Arn": arn}])
        for why, kind, detail, _ in RUN_ENGINE_EVENTS:
            where = {"jobQueue": queue} if kind.startswith("Batch") else {"clusterArn": cluster}
            source_ = "aws.batch" if kind.startswith("Batch") else "aws.ecs"
            entry = {"Source": source_, "DetailType": kind, "Detail": json.dumps({**where, **detail, "why": why})}
            assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0
        delivered = []
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                delivered.append(json.loads(message["Body"])["detail"]["why"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        assert sorted(delivered) == sorted(why for why, _, _, platform in RUN_ENGINE_EVENTS if platform)


# ---------------------------------------------------------------------------------------------
# networking without a NAT gateway (issue 17, item 14)

#: what a run container reaches: ECR (api, dkr; layers from S3), the table, the key, the bucket, its logs
RUN_CONTAINER_SERVICES = {"ecr.api", "ecr.dkr", "s3", "dynamodb", "kms", "logs"}


def endpoints() -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in transformed()["Resources"].items()
        if resource["Type"] == "AWS::EC2::VPCEndpoint"
    }


def test_vpc_endpoints_for_every_service_a_run_container_reaches_are_optional() -> None:
    services = {}
    for name, endpoint in endpoints().items():
        properties = endpoint["Properties"]
        service = properties["ServiceName"]["Fn::Sub"].removeprefix("com.amazonaws.${AWS::Region}.")
        services[service] = (endpoint["Condition"], properties["VpcEndpointType"], name)
        assert properties["VpcId"] == {"Ref": "VpcId"}, name
        if properties["VpcEndpointType"] == "Interface":
            # in the run containers' subnets, answering their HTTPS only, under the services' own names
            assert properties["SubnetIds"] == {"Ref": "SubnetIds"} and properties["PrivateDnsEnabled"] is True
            assert properties["SecurityGroupIds"] == [{"Fn::GetAtt": ["EndpointSecurityGroup", "GroupId"]}]
        else:
            assert properties["RouteTableIds"] == {"Fn::Split": [",", {"Ref": "RouteTableIds"}]}, name
    assert set(services) == RUN_CONTAINER_SERVICES
    for service, (condition, kind, _) in services.items():
        assert (condition, kind) == (
            ("CreateGatewayEndpoints", "Gateway")
            if service in ("s3", "dynamodb")
            else ("CreateInterfaceEndpoints", "Interface")
        ), service
    conditions = source()["Conditions"]
    assert conditions["CreateInterfaceEndpoints"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "VpcEndpoints"}, "none"]}]}
    assert conditions["CreateGatewayEndpoints"] == {"Fn::Equals": [{"Ref": "VpcEndpoints"}, "all"]}
    assert source()["Parameters"]["VpcEndpoints"]["Default"] == "none"  # a NAT gateway, as before
    # gateway endpoints cannot be made without route tables: the stack refuses the parameters
    [assertion] = source()["Rules"]["GatewayEndpointsNeedRouteTables"]["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "RouteTableIds"}, ""]}]}
    group = transformed()["Resources"]["EndpointSecurityGroup"]["Properties"]
    assert group["SecurityGroupIngress"] == [
        {
            "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "Description": "run containers",
            "SourceSecurityGroupId": {"Fn::GetAtt": ["TaskSecurityGroup", "GroupId"]},
        }
    ]  # fmt: skip


def test_the_readme_and_the_subnets_parameter_name_every_service_run_containers_reach() -> None:
    names = ("ECR", "S3", "DynamoDB", "KMS", "CloudWatch Logs")
    described = source()["Parameters"]["SubnetIds"]["Description"]
    readme = (REPO / "README.md").read_text()
    [sentence] = [line for line in readme.splitlines() if line.startswith("Run containers must reach")]
    for name in names:
        assert name in described and name in sentence, name


# ---------------------------------------------------------------------------------------------
# sam build and sam local invoke (issue 17, item 15; tests/integration/test_sam_local.py runs them)


def test_the_build_and_the_local_image_follow_the_functions_python() -> None:
    import re
    import tomllib

    runtime = source()["Globals"]["Function"]["Runtime"]
    python = runtime.removeprefix("python")
    # the Makefile installs wheels for that Python, and sam runs them on an image of it
    [makefile_python] = re.findall(r"^LAMBDA_PYTHON = (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert makefile_python == python
    config = tomllib.loads((REPO / "samconfig.toml").read_text())["default"]
    assert config["local_invoke"]["parameters"]["invoke_image"] == [f"hatchway/lambda-python:{python}"]
    # whose base Debian provides without a registry, and which CI builds
    from hatchway.executors.containers.images import DEBIAN_SUITES

    assert python in DEBIAN_SUITES
    assert f"infra/images/build --python {python} --lambda-python" in (REPO / ".ci" / "run").read_text()
    # sam's derivative of the image is rebuilt at each invoke (it is named without the Python)
    assert config["local_invoke"]["parameters"]["force_image_build"] is True
    # plain `sam build` runs make in the checkout: no copy of .venv and .venv-sam per function
    assert config["build"]["parameters"]["build_in_source"] is True


def test_the_readmes_deploy_checklist_names_every_parameter_and_the_teardown() -> None:
    readme = (REPO / "README.md").read_text()
    checklist = readme[readme.index("### Deploy checklist") :].split("\n## ", 1)[0]
    for parameter in source()["Parameters"]:
        assert f"`{parameter}`" in checklist, parameter
    assert "hatchway aws teardown" in checklist and "sam delete" in checklist
    assert "Only by reading AWS's documentation" in checklist
