"""What the two run engines (AWS Batch, ECS Fargate) share: :class:`BaseAwsEngine`.

A run engine (:class:`hatchway.ports.RunEngine`) never runs an attempt in the gateway. At
registration it creates one job or task definition per (project, environment, action, effective digest),
derived from ``compute_requirements`` (vCPU units -> vCPUs, memory MiB, ephemeral storage GiB),
``container_parameters`` (env, workdir) and ``timeout``, and reused by every run of that version.
A run becomes one job (Batch; its retries are Batch attempts) or one task per attempt (ECS) whose
container starts the runtime adapter, ``python3 -m hatchway.runtime.adapter --run <run id>``: the
adapter reads the run from the store, decrypts its ``#`` parameters with KMS, runs the action's
command under the contract and records the outcome (:mod:`hatchway.runtime.remote`). The engines'
state-change events, turned into :class:`StateChange` values here, settle whatever the adapter
could not (it never started, it was killed, the run was cancelled).

Task roles: with ``HATCHWAY_TASK_POLICY_ARN`` each project gets its own role per environment
(created on first registration there, tagged ``hatchway-project`` and ``hatchway-environment``,
bounded by that policy), so definitions are per environment too (Batch cannot change a job's role).
The KMS key policy allows ``kms:Decrypt`` only when ``kms:EncryptionContext:project_id`` and
``kms:EncryptionContext:environment`` equal the caller's ``aws:PrincipalTag/hatchway-project`` and
``aws:PrincipalTag/hatchway-environment``, so a job can decrypt only its own project's and
environment's secrets; the shared policy scopes the role's table and bucket keys to its project.
"""

from __future__ import annotations

import hashlib
import json
import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Self

from hatchway.aws.aws_lambda import image_required, resource_name
from hatchway.aws.clients import AwsClients, error_code, translate
from hatchway.aws.images import ImageProbe
from hatchway.config import Settings
from hatchway.domain.runs import Run, StateChange
from hatchway.domain.spec import ActionSpec
from hatchway.errors import InternalError
from hatchway.runtime.remote import PROJECT_VARIABLE

CONTAINER_NAME = "action"
PROJECT_TAG = "hatchway-project"
#: a task role is per (project, environment): the KMS key binds both to the secrets' context
ENVIRONMENT_TAG = "hatchway-environment"
#: the engine's own time limit is a backstop beyond the adapter's deadline
TIMEOUT_GRACE_SECONDS = 60


def vcpus(units: int) -> str:
    """CPU units (1024 = one vCPU) as Batch writes vCPUs: ``0.25``, ``0.5``, ``1``, ``2``..."""
    value = units / 1024
    return f"{value:g}"


def task_role_name(prefix: str, project_id: str, environment: str) -> str:
    name = f"{prefix}-task-{project_id}-{environment}"
    if len(name) <= 64:
        return name
    return hashed_role_name(prefix, project_id, environment)


def hashed_role_name(prefix: str, project_id: str, environment: str) -> str:
    """A role name no other (project, environment)'s can match: IAM compares role names ignoring
    case, project ids and environments do not (``proj_A`` and ``proj_a`` are two projects)."""
    return f"{prefix}-task-{hashlib.sha256(f'{project_id}/{environment}'.encode()).hexdigest()[:20]}"


class TaskRoles:
    """The IAM role a project's jobs and tasks in one environment run as."""

    TRUST = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }

    def __init__(self, aws: AwsClients, prefix: str, policy_arn: str | None, fixed_role_arn: str | None) -> None:
        self.aws = aws
        self.prefix = prefix
        self.policy_arn = policy_arn
        self.fixed_role_arn = fixed_role_arn
        self._known: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def arn_for(self, project_id: str, environment: str) -> str | None:
        """The role ARN of the project's runs in ``environment`` (created, with the shared policy as
        boundary and tagged with both, on first use)."""
        if self.policy_arn is None:
            return self.fixed_role_arn
        with self._lock:
            known = self._known.get((project_id, environment))
        if known:
            return known
        arn = self._role(project_id, environment, task_role_name(self.prefix, project_id, environment))
        if arn is None:  # the name is another's (it differs only in case)
            arn = self._role(project_id, environment, hashed_role_name(self.prefix, project_id, environment))
        if arn is None:
            raise InternalError(f"no task role can be named for project {project_id} in {environment}")
        with self._lock:
            self._known[(project_id, environment)] = arn
        return arn

    def _role(self, project_id: str, environment: str, name: str) -> str | None:
        """The ARN of role ``name`` (made if missing) when it is this project's and environment's;
        None if another's role has that name: a role is handed out only under its own tags."""
        tags = {PROJECT_TAG: project_id, ENVIRONMENT_TAG: environment}
        iam = self.aws.client("iam")
        with translate("AWS IAM"):
            try:
                role = iam.get_role(RoleName=name)["Role"]
            except iam.exceptions.NoSuchEntityException:
                try:
                    role = iam.create_role(
                        RoleName=name,
                        Path=f"/{self.prefix}/",
                        AssumeRolePolicyDocument=json.dumps(self.TRUST),
                        PermissionsBoundary=self.policy_arn,
                        Description=f"hatchway runs of {project_id} in {environment}"[:1000],
                        Tags=[{"Key": key, "Value": value} for key, value in tags.items()],
                    )["Role"]
                except iam.exceptions.EntityAlreadyExistsException:
                    role = iam.get_role(RoleName=name)["Role"]
                    if not _tagged(role, tags):
                        return None
                iam.attach_role_policy(RoleName=name, PolicyArn=self.policy_arn)
                return str(role["Arn"])
        return str(role["Arn"]) if _tagged(role, tags) else None


def _tagged(role: dict[str, Any], tags: dict[str, str]) -> bool:
    found = {tag.get("Key"): tag.get("Value") for tag in role.get("Tags") or []}
    return all(found.get(key) == value for key, value in tags.items())


class BaseAwsEngine(ABC):
    """Base of the Batch and ECS engines: settings, roles, the container's environment."""

    name: str = "aws"
    #: how long a definition's name may be
    NAME_LIMIT = 128

    def __init__(self, settings: Settings, aws: AwsClients | None = None) -> None:
        self.settings = settings
        self.aws = aws or AwsClients.from_settings(settings)
        self.prefix = settings.aws.resource_prefix
        self.roles = TaskRoles(self.aws, self.prefix, settings.aws.task_policy_arn, settings.aws.task_role_arn)
        #: what a local Docker engine, where one is at hand, shows of an image at registration
        self.probe = ImageProbe.from_settings(settings)

    @classmethod
    def from_settings(cls, settings: Settings, aws: AwsClients | None = None) -> Self:
        return cls(settings, aws)

    def check(self, spec: ActionSpec, invoked: str) -> None:
        image_required(spec, "a run")

    def vet(self, project_id: str, spec: ActionSpec) -> None:
        """At registration, before anything is made: an image a local Docker engine shows cannot run
        the adapter is refused (:mod:`hatchway.aws.images`)."""
        self.probe.check(image_required(spec, "a run"), self.name)

    def definition_name(self, project_id: str, spec: ActionSpec, environment: str) -> str:
        """The job definition or task definition family a version's runs in ``environment`` use (one
        per digest and environment: each environment's runs have their own task role)."""
        return resource_name(self.prefix, f"{project_id}/{environment}", spec, self.NAME_LIMIT)

    @abstractmethod
    def prepare(self, project_id: str, spec: ActionSpec, environment: str) -> None:
        """Register the version's definition unless an active one exists (idempotent)."""

    @abstractmethod
    def release(self, project_id: str, spec: ActionSpec, environment: str) -> None:
        """Deregister the definition of a deleted version (none left is fine). A run of it that
        comes later (a retry) registers it again at submit."""

    @abstractmethod
    def submit(self, run: Run, spec: ActionSpec) -> str:
        """Hand an async run to the engine; the job id or task ARN (the run's ``external_id``)."""

    @abstractmethod
    def terminate(self, run: Run, reason: str) -> None:
        """Stop the job or task of ``run``; a finished one is fine."""

    @abstractmethod
    def describe(self, external_ids: list[str]) -> dict[str, StateChange | None]:
        """What the engine says of these jobs or tasks now, as the state change each one's event
        would carry (None: still on its way, nothing to apply). One the engine no longer knows is absent."""

    @abstractmethod
    def lost(self, run_id: str, external_id: str) -> StateChange:
        """The state change to apply when the engine no longer knows the run's job or task."""

    def close(self) -> None:
        """Nothing to release: clients are shared and made on first use."""

    def environment(self, spec: ActionSpec) -> list[dict[str, str]]:
        """The container's variables: where the adapter finds the store and the key, and the action's own."""
        settings = self.settings
        env = dict(spec.container_parameters.env_vars or {}) if spec.container_parameters else {}
        env.update(
            {
                "HATCHWAY_BACKEND": "aws",
                "HATCHWAY_HOME": "/tmp/hatchway",  # noqa: S108 - the container's private scratch space
                "HATCHWAY_TABLE_NAME": settings.store.table_name,
                "HATCHWAY_KMS_KEY_ID": settings.aws.kms_key,
                "HATCHWAY_BUCKET": settings.aws.outputs_bucket,
                "HATCHWAY_RESOURCE_PREFIX": settings.aws.resource_prefix,
                "HATCHWAY_LOG_LEVEL": settings.observability.log_level,
                "HATCHWAY_KILL_GRACE_SECONDS": f"{settings.runs.kill_grace_seconds:g}",
            }
        )
        if settings.aws.aws_region:
            env["AWS_REGION"] = settings.aws.aws_region
        if settings.aws.aws_endpoint_url:
            env["AWS_ENDPOINT_URL"] = settings.aws.aws_endpoint_url
        return [{"name": key, "value": value} for key, value in sorted(env.items())]

    def log_configuration(self) -> dict[str, Any] | None:
        if not self.settings.aws.log_group:
            return None
        return {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": self.settings.aws.log_group,
                "awslogs-region": self.aws.region,
                "awslogs-stream-prefix": self.prefix,
            },
        }

    def timeout_seconds(self, seconds: int) -> int:
        return max(60, seconds + TIMEOUT_GRACE_SECONDS)


def run_environment(run: Run) -> list[dict[str, str]]:
    """What a job or task of ``run`` gets beside its definition's variables (set at submit, so a
    definition registered before these existed serves too): the run's project, which leads the
    keys of its run on DynamoDB and in S3, and no look-ups under keys without one (the task role
    reaches its own project's keys only)."""
    return [
        {"name": PROJECT_VARIABLE, "value": run.project_id},
        {"name": "HATCHWAY_LEGACY_RUN_KEYS", "value": "off"},
    ]


def project_of(variables: list[dict[str, Any]] | None, tags: Any = None) -> str | None:
    """The run's project a job's or task's detail names: its ``hatchway:project`` tag, else the
    variable :func:`run_environment` set (None for jobs and tasks submitted before either)."""
    if isinstance(tags, dict) and tags.get("hatchway:project"):
        return str(tags["hatchway:project"])
    for variable in variables or []:
        if variable.get("name") == PROJECT_VARIABLE and variable.get("value"):
            return str(variable["value"])
    return None


def chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def is_missing_definition(exc: BaseException) -> bool:
    """A job or task definition the engine does not know (registered before this backend, or removed)."""
    text = str(exc).lower()
    return error_code(exc) in ("ClientException", "InvalidParameterException") and (
        "does not exist" in text or "not found" in text or "unable to" in text or "inactive" in text
    )


def as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def container_exit(containers: list[dict[str, Any]] | None) -> tuple[int | None, str | None]:
    """Exit code and reason of the action's container in an ECS event (or the only one)."""
    chosen: dict[str, Any] = {}
    for container in containers or []:
        if container.get("name") == CONTAINER_NAME or not chosen:
            chosen = container
    return as_int(chosen.get("exitCode")), chosen.get("reason")


if TYPE_CHECKING:  # mypy checks that both engines answer the port
    from hatchway import ports

    def _implements(engine: BaseAwsEngine) -> ports.RunEngine:
        return engine
