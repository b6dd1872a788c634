"""Async runs as ECS Fargate tasks (the alternative to AWS Batch: no queue, starts at once).

One task definition family per (project, environment, action, effective digest): Fargate,
``awsvpc``, task cpu/memory from ``compute_requirements``, ephemeral storage from ``storage``, one
essential container (``action``) whose entry point is the runtime adapter, with the action's
``env_vars``, ``workdir`` and the task role of the project's runs in that environment. ECS has no
attempts or time limit of its own: each attempt is one ``RunTask`` (``startedBy`` = the run id),
the adapter inside enforces the deadline (the watchdog), and the events handler starts the next
task when an attempt asked for a retry.
Cancel is ``StopTask``; "ECS Task State Change" events settle the run (:mod:`hatchway.services.remote`),
and ``DescribeTasks`` tells the remote sweeper what became of a task whose events never came.
"""

from __future__ import annotations

from typing import Any

from hatchway.aws.aws_lambda import image_required
from hatchway.aws.clients import translate
from hatchway.aws.engines import (
    CONTAINER_NAME,
    BaseAwsEngine,
    chunks,
    container_exit,
    is_missing_definition,
    project_of,
    run_environment,
)
from hatchway.domain.runs import Run, StateChange
from hatchway.domain.spec import ActionSpec
from hatchway.errors import InternalError, Unavailable
from hatchway.runtime.remote import ADAPTER_MODULE

#: tasks per DescribeTasks call (ECS's limit)
DESCRIBE_BATCH = 100
#: seconds ECS waits after SIGTERM before SIGKILL (the adapter needs a moment to record the end)
STOP_TIMEOUT_SECONDS = 30


class EcsEngine(BaseAwsEngine):
    """Runs as ECS Fargate tasks, one per attempt."""

    name = "ecs"

    @property
    def client(self) -> Any:
        return self.aws.client("ecs")

    @property
    def cluster(self) -> str:
        if not self.settings.aws.ecs_cluster:
            raise InternalError("HATCHWAY_ECS_CLUSTER is not set: runs cannot go to ECS")
        return self.settings.aws.ecs_cluster

    NAME_LIMIT = 255

    def task_definition(self, project_id: str, spec: ActionSpec, environment: str) -> dict[str, Any]:
        """``RegisterTaskDefinition``'s arguments for ``spec``."""
        compute = spec.compute_requirements
        container: dict[str, Any] = {
            "name": CONTAINER_NAME,
            "image": image_required(spec, "a run"),
            "essential": True,
            "entryPoint": ADAPTER_MODULE,
            "command": ["--run", "none"],
            "environment": self.environment(spec),
            "memory": compute.memory,
            "stopTimeout": STOP_TIMEOUT_SECONDS,
        }
        workdir = spec.container_parameters.workdir if spec.container_parameters else None
        if workdir and workdir.startswith("/"):
            container["workingDirectory"] = workdir
        logs = self.log_configuration()
        if logs:
            container["logConfiguration"] = logs
        definition: dict[str, Any] = {
            "family": self.definition_name(project_id, spec, environment),
            "requiresCompatibilities": ["FARGATE"],
            "networkMode": "awsvpc",
            "cpu": str(compute.vCPU),
            "memory": str(compute.memory),
            "ephemeralStorage": {"sizeInGiB": compute.storage},
            "containerDefinitions": [container],
            "tags": [
                {"key": "hatchway:project", "value": project_id},
                {"key": "hatchway:environment", "value": environment},
                {"key": "hatchway:action", "value": spec.name},
            ],
        }
        role = self.roles.arn_for(project_id, environment)
        if role:
            definition["taskRoleArn"] = role
        if self.settings.aws.execution_role_arn:
            definition["executionRoleArn"] = self.settings.aws.execution_role_arn
        return definition

    def prepare(self, project_id: str, spec: ActionSpec, environment: str) -> None:
        """Register the version's task definition unless its family has an active revision."""
        family = self.definition_name(project_id, spec, environment)
        with translate("Amazon ECS"):
            try:
                self.client.describe_task_definition(taskDefinition=family)
            except self.client.exceptions.ClientException as exc:
                if not is_missing_definition(exc):
                    raise
                self.client.register_task_definition(**self.task_definition(project_id, spec, environment))

    def release(self, project_id: str, spec: ActionSpec, environment: str) -> None:
        family = self.definition_name(project_id, spec, environment)
        with translate("Amazon ECS"):
            pages = self.client.get_paginator("list_task_definitions").paginate(familyPrefix=family, status="ACTIVE")
            for page in pages:
                for arn in page.get("taskDefinitionArns", []):
                    if arn.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family:  # not a longer family with this prefix
                        self.client.deregister_task_definition(taskDefinition=arn)

    def submit(self, run: Run, spec: ActionSpec) -> str:
        arguments: dict[str, Any] = {
            "cluster": self.cluster,
            "taskDefinition": self.definition_name(run.project_id, spec, run.environment),
            "launchType": "FARGATE",
            "count": 1,
            "startedBy": run.id,
            "overrides": {
                "containerOverrides": [
                    {"name": CONTAINER_NAME, "command": ["--run", run.id], "environment": run_environment(run)}
                ]
            },
            "networkConfiguration": {
                "awsvpcConfiguration": {
                    "subnets": list(self.settings.aws.subnets),
                    "securityGroups": list(self.settings.aws.security_groups),
                    "assignPublicIp": "DISABLED",
                }
            },
            "tags": [{"key": "hatchway:run", "value": run.id}, {"key": "hatchway:project", "value": run.project_id}],
        }
        with translate("Amazon ECS"):
            try:
                answer = self.client.run_task(**arguments)
            except (self.client.exceptions.ClientException, self.client.exceptions.InvalidParameterException) as exc:
                if not is_missing_definition(exc):
                    raise
                self.prepare(run.project_id, spec, run.environment)
                answer = self.client.run_task(**arguments)
        tasks = answer.get("tasks") or []
        if not tasks:
            reasons = ", ".join(f.get("reason", "?") for f in answer.get("failures") or []) or "no task started"
            raise Unavailable(f"ECS could not start the run ({reasons}); try again shortly")
        arn: str = tasks[0]["taskArn"]
        return arn

    def terminate(self, run: Run, reason: str) -> None:
        if run.external_id is None:
            return
        with translate("Amazon ECS"):
            self.client.stop_task(cluster=self.cluster, task=run.external_id, reason=reason[:255])

    def describe(self, external_ids: list[str]) -> dict[str, StateChange | None]:
        # DescribeTasks answers the same task detail an "ECS Task State Change" event carries; a
        # task ARN names its cluster (arn:...:task/<cluster>/<id>)
        clusters: dict[str, list[str]] = {}
        for arn in external_ids:
            parts = arn.split(":task/", 1)[-1].split("/")
            clusters.setdefault(parts[0] if len(parts) == 2 else self.cluster, []).append(arn)
        found: dict[str, StateChange | None] = {}
        with translate("Amazon ECS"):
            for cluster, arns in clusters.items():
                for batch in chunks(arns, DESCRIBE_BATCH):
                    for task in self.client.describe_tasks(cluster=cluster, tasks=batch).get("tasks") or []:
                        found[task["taskArn"]] = state_change(task)
        return found

    def lost(self, run_id: str, external_id: str) -> StateChange:
        # ECS forgets stopped tasks after about an hour: the attempt ended, how is unknown
        return StateChange(run_id, external_id, "stopped", reason="ECS no longer knows the task", engine="ecs")


def state_change(detail: dict[str, Any]) -> StateChange | None:
    """An "ECS Task State Change" event's detail as a :class:`StateChange` (None: nothing to do)."""
    run_id = detail.get("startedBy")
    task_arn = detail.get("taskArn")
    status = detail.get("lastStatus")
    if not run_id or not task_arn or not str(run_id).startswith("run_"):
        return None  # tasks hatchway did not start (Batch's own Fargate tasks say "AWS Batch")
    overrides = (detail.get("overrides") or {}).get("containerOverrides") or []
    project_id = project_of([variable for each in overrides for variable in each.get("environment") or []])
    if status == "RUNNING":
        return StateChange(str(run_id), str(task_arn), "running", engine="ecs", project_id=project_id)
    if status != "STOPPED":
        return None
    exit_code, container_reason = container_exit(detail.get("containers"))
    reason = detail.get("stoppedReason") or container_reason or detail.get("stopCode")
    # TaskFailedToStart: no container ran (CannotPullContainerError, ResourceInitializationError...)
    failed_to_start = detail.get("stopCode") == "TaskFailedToStart" and exit_code is None
    return StateChange(
        str(run_id), str(task_arn), "stopped", exit_code, str(reason) if reason else None, engine="ecs",
        failed_to_start=failed_to_start, project_id=project_id,
    )  # fmt: skip
