"""Async runs as AWS Batch jobs on Fargate (the AWS backend's default run engine).

One job definition per (project, environment, action, effective digest): Fargate, the action's
image, the runtime adapter as command with the run id as a parameter (``Ref::run_id``), vCPUs and
memory from ``compute_requirements``, ephemeral storage from ``storage``, the action's
``env_vars``, the task role of the project's runs in that environment (Batch cannot change a job's
role, hence a definition per environment), a timeout from ``timeout`` plus a grace, and a retry
strategy whose ``evaluateOnExit`` never retries exit code 1 (a user error). Each run is one
``SubmitJob`` whose attempts are Batch attempts (``retryStrategy.attempts`` = the run's attempts
plus the lost-attempt allowance for attempts the platform fails, at most Batch's 10).
Cancel is ``TerminateJob``; "Batch Job State Change" events settle the run (:mod:`hatchway.services.remote`),
and ``DescribeJobs`` tells the remote sweeper what became of a job whose events never came.

Batch job definitions cannot override an image's ENTRYPOINT (only its command; ECS task
definitions and Lambda image configs can), so an action image used with Batch must have no
ENTRYPOINT, or one that executes its arguments, for the adapter command to be what runs.
"""

from __future__ import annotations

from typing import Any

from hatchway.aws.aws_lambda import image_required
from hatchway.aws.clients import translate
from hatchway.aws.engines import (
    BaseAwsEngine,
    as_int,
    chunks,
    is_missing_definition,
    project_of,
    run_environment,
    vcpus,
)
from hatchway.domain.runs import Run, StateChange
from hatchway.domain.spec import ActionSpec
from hatchway.errors import InternalError
from hatchway.runtime.remote import ADAPTER_MODULE

MAX_ATTEMPTS = 10
#: jobs per DescribeJobs call (Batch's limit)
DESCRIBE_BATCH = 100
#: exit 1 is the action's user error: another attempt cannot help
NOT_RETRIED = [{"onExitCode": "1", "action": "EXIT"}]


class BatchEngine(BaseAwsEngine):
    """Runs as Batch jobs; their attempts are the run's attempts."""

    name = "batch"

    @property
    def client(self) -> Any:
        return self.aws.client("batch")

    @property
    def job_queue(self) -> str:
        if not self.settings.aws.batch_job_queue:
            raise InternalError("HATCHWAY_BATCH_JOB_QUEUE is not set: runs cannot go to AWS Batch")
        return self.settings.aws.batch_job_queue

    def job_definition(self, project_id: str, spec: ActionSpec, environment: str) -> dict[str, Any]:
        """``RegisterJobDefinition``'s arguments for ``spec``."""
        compute = spec.compute_requirements
        container: dict[str, Any] = {
            "image": image_required(spec, "a run"),
            "command": [*ADAPTER_MODULE, "--run", "Ref::run_id"],
            "resourceRequirements": [
                {"type": "VCPU", "value": vcpus(compute.vCPU)},
                {"type": "MEMORY", "value": str(compute.memory)},
            ],
            "environment": self.environment(spec),
            "ephemeralStorage": {"sizeInGiB": compute.storage},
            "fargatePlatformConfiguration": {"platformVersion": "LATEST"},
            "networkConfiguration": {"assignPublicIp": "DISABLED"},
        }
        role = self.roles.arn_for(project_id, environment)
        if role:
            container["jobRoleArn"] = role
        if self.settings.aws.execution_role_arn:
            container["executionRoleArn"] = self.settings.aws.execution_role_arn
        logs = self.log_configuration()
        if logs:
            container["logConfiguration"] = logs
        return {
            "jobDefinitionName": self.definition_name(project_id, spec, environment),
            "type": "container",
            "platformCapabilities": ["FARGATE"],
            "parameters": {"run_id": "none"},
            "containerProperties": container,
            "retryStrategy": {"attempts": 1, "evaluateOnExit": NOT_RETRIED},
            "timeout": {"attemptDurationSeconds": self.timeout_seconds(spec.timeout_seconds)},
            "propagateTags": True,
            "tags": {"hatchway:project": project_id, "hatchway:environment": environment, "hatchway:action": spec.name},
        }

    def attempts(self, run: Run) -> int:
        """Batch attempts of a run's job: its own attempts plus the lost-attempt allowance, so that an
        attempt the platform failed (CannotPullContainerError, a host terminated) is retried as on every
        engine. Its own failures stay within its own attempts: the container side exits 1 (never
        retried) once they are used up, and 75 when it queued the next one."""
        return max(1, min(MAX_ATTEMPTS, run.max_attempts + self.settings.runs.max_lost_attempts))

    def prepare(self, project_id: str, spec: ActionSpec, environment: str) -> None:
        """Register the version's job definition unless an active one exists (one per digest and
        environment, reused)."""
        name = self.definition_name(project_id, spec, environment)
        with translate("AWS Batch"):
            found = self.client.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")
            if not found.get("jobDefinitions"):
                self.client.register_job_definition(**self.job_definition(project_id, spec, environment))

    def release(self, project_id: str, spec: ActionSpec, environment: str) -> None:
        name = self.definition_name(project_id, spec, environment)
        with translate("AWS Batch"):
            found = self.client.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")
            for definition in found.get("jobDefinitions", []):
                self.client.deregister_job_definition(jobDefinition=definition["jobDefinitionArn"])

    def submit(self, run: Run, spec: ActionSpec) -> str:
        arguments = {
            "jobName": run.id,
            "jobQueue": self.job_queue,
            "jobDefinition": self.definition_name(run.project_id, spec, run.environment),
            "parameters": {"run_id": run.id},
            "containerOverrides": {"environment": run_environment(run)},
            "retryStrategy": {"attempts": self.attempts(run), "evaluateOnExit": NOT_RETRIED},
            "timeout": {"attemptDurationSeconds": self.timeout_seconds(run.timeout_seconds)},
            "tags": {"hatchway:run": run.id, "hatchway:project": run.project_id},
            "propagateTags": True,
        }
        with translate("AWS Batch"):
            try:
                job_id: str = self.client.submit_job(**arguments)["jobId"]
            except self.client.exceptions.ClientException as exc:
                if not is_missing_definition(exc):
                    raise
                self.prepare(run.project_id, spec, run.environment)
                job_id = self.client.submit_job(**arguments)["jobId"]
        return job_id

    def terminate(self, run: Run, reason: str) -> None:
        if run.external_id is None:
            return
        with translate("AWS Batch"):
            self.client.terminate_job(jobId=run.external_id, reason=reason[:255])

    def describe(self, external_ids: list[str]) -> dict[str, StateChange | None]:
        # DescribeJobs answers the same job detail a "Batch Job State Change" event carries
        found: dict[str, StateChange | None] = {}
        with translate("AWS Batch"):
            for batch in chunks(external_ids, DESCRIBE_BATCH):
                for job in self.client.describe_jobs(jobs=batch).get("jobs") or []:
                    found[job["jobId"]] = state_change(job)
        return found

    def lost(self, run_id: str, external_id: str) -> StateChange:
        return StateChange(run_id, external_id, "failed", reason="AWS Batch no longer knows the job", engine="batch")


def state_change(detail: dict[str, Any]) -> StateChange | None:
    """A "Batch Job State Change" event's detail as a :class:`StateChange` (None: nothing to do)."""
    run_id = (detail.get("parameters") or {}).get("run_id") or detail.get("jobName")
    job_id = detail.get("jobId")
    status = detail.get("status")
    if not run_id or not job_id or not str(run_id).startswith("run_"):
        return None
    attempts = detail.get("attempts") or []
    container = detail.get("container") or {}
    project_id = project_of(container.get("environment"), detail.get("tags"))
    if status == "RUNNING":
        return StateChange(
            str(run_id), str(job_id), "running", attempt=len(attempts) + 1, engine="batch", project_id=project_id
        )
    if status not in ("SUCCEEDED", "FAILED"):
        return None  # SUBMITTED, PENDING, RUNNABLE, STARTING: still queued
    last = (attempts[-1].get("container") or {}) if attempts else {}
    exit_code = container.get("exitCode", last.get("exitCode"))
    reason = detail.get("statusReason") or container.get("reason") or last.get("reason")
    return StateChange(
        str(run_id),
        str(job_id),
        "succeeded" if status == "SUCCEEDED" else "failed",
        exit_code=as_int(exit_code),
        reason=str(reason) if reason else None,
        attempt=len(attempts) or None,
        engine="batch",
        project_id=project_id,
    )
