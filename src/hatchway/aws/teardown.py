"""What the gateway made at run time, found and removed: ``hatchway aws teardown`` and the release
of an action's resources when it is deleted.

A stack's own resources are CloudFormation's to delete. Registrations and pipelines make others
that CloudFormation never knew: one Lambda function per action version with sync actions, one
Batch job definition or ECS task definition per action version and environment with runs (and per
inline container step of a pipeline), one Step Functions state machine per pipeline, and one IAM
role per project and environment whose jobs run under ``HATCHWAY_TASK_POLICY_ARN`` (one per
project, from before roles were per environment). Each carries the ``hatchway:project`` tag (the
role ``hatchway-project``) and a name under the deployment's ``HATCHWAY_RESOURCE_PREFIX``; only
what has both is touched, so another deployment in the account (another prefix), or something
named alike by hand, is left alone. A role is found by its path ``/<prefix>/``.

Run it before ``sam delete``: the project roles hold the task policy the stack would delete,
and the functions log to the stack's log group.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hatchway.aws.aws_lambda import ACTION_FUNCTION_INFIX
from hatchway.aws.clients import AwsClients, error_code, translate
from hatchway.aws.engines import PROJECT_TAG

#: the tag every resource made at run time carries (a role carries PROJECT_TAG: IAM's tag keys
#: appear in policies as aws:PrincipalTag/<key>, where a colon would need quoting)
RUNTIME_TAG = "hatchway:project"


@dataclass
class Found:
    """One resource the gateway made: what it is and how to remove it."""

    kind: str
    name: str
    remove: Callable[[], None] = field(repr=False)

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass
class TornDown:
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class Teardown:
    """The resources made at run time under ``prefix``, per service."""

    def __init__(self, aws: AwsClients, prefix: str) -> None:
        self.aws = aws
        self.prefix = prefix

    def find(self) -> list[Found]:
        return [
            *self.functions(),
            *self.job_definitions(),
            *self.task_definitions(),
            *self.state_machines(),
            *self.roles(),
        ]

    def remove(self, found: list[Found]) -> TornDown:
        """Remove each of ``found`` (one already gone counts as removed); the rest is reported."""
        done = TornDown()
        for item in found:
            try:
                item.remove()
            except Exception as exc:
                if error_code(exc) in _GONE:
                    done.removed.append(str(item))
                    continue
                done.failed.append(f"{item}: {error_code(exc) or type(exc).__name__}")
            else:
                done.removed.append(str(item))
        return done

    # ---- per service ---------------------------------------------------------------------------

    def functions(self) -> Iterator[Found]:
        client = self.aws.client("lambda")
        start = f"{self.prefix}-{ACTION_FUNCTION_INFIX}-"
        with translate("AWS Lambda"):
            for page in client.get_paginator("list_functions").paginate():
                for function in page.get("Functions", []):
                    name = function["FunctionName"]
                    if name.startswith(start) and RUNTIME_TAG in client.list_tags(Resource=function["FunctionArn"]).get(
                        "Tags", {}
                    ):
                        yield Found("Lambda function", name, _call(client.delete_function, FunctionName=name))

    def job_definitions(self) -> Iterator[Found]:
        client = self.aws.client("batch")
        with translate("AWS Batch"):
            for page in client.get_paginator("describe_job_definitions").paginate(status="ACTIVE"):
                for definition in page.get("jobDefinitions", []):
                    name = definition["jobDefinitionName"]
                    if name.startswith(f"{self.prefix}-") and RUNTIME_TAG in (definition.get("tags") or {}):
                        arn = definition["jobDefinitionArn"]
                        label = f"{name}:{definition['revision']}"
                        yield Found(
                            "Batch job definition", label, _call(client.deregister_job_definition, jobDefinition=arn)
                        )

    def task_definitions(self) -> Iterator[Found]:
        client = self.aws.client("ecs")
        with translate("Amazon ECS"):
            families = client.get_paginator("list_task_definition_families")
            for page in families.paginate(familyPrefix=f"{self.prefix}-", status="ACTIVE"):
                for family in page.get("families", []):
                    # (ListTaskDefinitions' familyPrefix is a whole family name, not a prefix)
                    revisions = client.get_paginator("list_task_definitions")
                    for listed in revisions.paginate(familyPrefix=family, status="ACTIVE"):
                        for arn in listed.get("taskDefinitionArns", []):
                            yield from self._task_definition(client, arn)

    @staticmethod
    def _task_definition(client: Any, arn: str) -> Iterator[Found]:
        described = client.describe_task_definition(taskDefinition=arn, include=["TAGS"])
        if any(tag.get("key") == RUNTIME_TAG for tag in described.get("tags") or []):
            remove = _call(client.deregister_task_definition, taskDefinition=arn)
            yield Found("ECS task definition", arn.rsplit("/", 1)[-1], remove)

    def state_machines(self) -> Iterator[Found]:
        client = self.aws.client("stepfunctions")
        with translate("AWS Step Functions"):
            for page in client.get_paginator("list_state_machines").paginate():
                for machine in page.get("stateMachines", []):
                    name, arn = machine["name"], machine["stateMachineArn"]
                    if not name.startswith(f"{self.prefix}-"):
                        continue
                    tags = client.list_tags_for_resource(resourceArn=arn).get("tags") or []
                    if any(tag.get("key") == RUNTIME_TAG for tag in tags):
                        yield Found("state machine", name, _call(client.delete_state_machine, stateMachineArn=arn))

    def roles(self) -> Iterator[Found]:
        client = self.aws.client("iam")
        with translate("AWS IAM"):
            for page in client.get_paginator("list_roles").paginate(PathPrefix=f"/{self.prefix}/"):
                for role in page.get("Roles", []):
                    name = role["RoleName"]
                    if not name.startswith(f"{self.prefix}-task-"):
                        continue
                    tags = client.list_role_tags(RoleName=name).get("Tags") or []
                    if any(tag.get("Key") == PROJECT_TAG for tag in tags):
                        yield Found("IAM role", name, functools.partial(self._delete_role, client, name))

    @staticmethod
    def _delete_role(client: Any, name: str) -> None:
        """A role goes only without policies: the attached ones are detached, the inline ones deleted."""
        for page in client.get_paginator("list_attached_role_policies").paginate(RoleName=name):
            for policy in page.get("AttachedPolicies", []):
                client.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
        for page in client.get_paginator("list_role_policies").paginate(RoleName=name):
            for policy_name in page.get("PolicyNames", []):
                client.delete_role_policy(RoleName=name, PolicyName=policy_name)
        client.delete_role(RoleName=name)


#: what AWS answers for something already removed
_GONE = frozenset({"ResourceNotFoundException", "NoSuchEntity", "StateMachineDoesNotExist"})


def _call(method: Callable[..., Any], **arguments: Any) -> Callable[[], None]:
    def call() -> None:
        method(**arguments)

    return call
