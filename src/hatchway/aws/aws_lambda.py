"""Sync actions as container Lambdas (the AWS backend).

Registering an action version with sync actions creates one function per (project, action,
effective digest), named ``<prefix>-act-<action>-<key>`` apart from the gateway's own functions
(``<prefix>-api``, ``-runner``, ``-events``, ``-sweeper``, ``-pipelines``) so the API role's
grant names action functions only: ``PackageType=Image`` with the action's image, ``Timeout=30``,
memory from ``compute_requirements`` and ephemeral storage from ``storage`` (both clamped to
Lambda's range), and the image's entry point set to ``awslambdaric`` with hatchway's runtime
adapter as handler - so the image needs only ``hatchway`` (its standard-library runtime) and
``awslambdaric`` installed, and no ENTRYPOINT of its own matters. The function is immutable in
practice: a new spec has a new digest and so a new function. Every action function logs to one
group, ``/<prefix>/actions`` (``LoggingConfig``; each stream is named after its function), which
template.yaml creates with the stack's retention; ``metadata.reserved_concurrency`` in action.json
reserves (and caps) the function's concurrency (``PutFunctionConcurrency``).

A sync call is one synchronous ``Invoke`` (``RequestResponse``) whose payload is the runtime
adapter's invocation (:func:`~hatchway.domain.attempts.adapter_payload`: config.json, argv, env,
time left); the adapter's outcome maps to the API's answers exactly as a local process does.
Lambda's own failures map as the contract wants: a function error (the adapter crashed, ran out of
memory) is an application error (500), a Lambda timeout a timeout (504), throttling, a function
still being created or an unreachable Lambda a 503 - in that case nothing ran.

File stashes and input files are not handed to the function yet (``stages_files`` is false): a
sync call naming a stash or inputs is refused with a 422 before a stash is made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from hatchway.aws.clients import AwsClients, error_code, is_unreachable, translate
from hatchway.aws.images import ImageProbe
from hatchway.config import SYNC_LIMIT_SECONDS, Settings
from hatchway.domain.attempts import AttemptResult, Invocation, adapter_payload, result_from_outcome
from hatchway.domain.spec import ActionSpec
from hatchway.errors import InternalError, ValidationFailed
from hatchway.runtime.contract import LAMBDA_RESPONSE_BYTES, OutputCollector

FILES_UNSUPPORTED = "file stashes and input files are not available for Lambda sync actions yet"
#: what action function names start with after the resource prefix (template.yaml grants ``<prefix>-act-*``)
ACTION_FUNCTION_INFIX = "act"
#: action.json ``metadata`` key: the reserved concurrency of the version's function (AWS only)
RESERVED_CONCURRENCY_KEY = "reserved_concurrency"
MAX_RESERVED_CONCURRENCY = 100_000
MIN_MEMORY, MAX_MEMORY = 128, 10240
MIN_STORAGE_MB, MAX_STORAGE_MB = 512, 10240
ADAPTER_ENTRY_POINT = ["python3", "-m", "awslambdaric"]
ADAPTER_HANDLER = "hatchway.runtime.adapter.lambda_handler"
#: the adapter answers this long before the function's own 30 s limit would cut it off
TIMEOUT_MARGIN_SECONDS = 1.0
#: how long a function that is not Active yet waits before it is looked at again (doubling to the cap)
ACTIVE_POLL_SECONDS = (0.25, 2.0)
#: codes of a Lambda that cannot take the call now; nothing ran
BUSY_CODES = frozenset(
    {
        "TooManyRequestsException",
        "ResourceConflictException",
        "ResourceNotReadyException",
        "EC2ThrottledException",
        "ENILimitReachedException",
        "SubnetIPAddressLimitReachedException",
        "ServiceException",
    }
)


def image_required(spec: ActionSpec, where: str) -> str:
    """The action's image, or a 422 saying that AWS runs images only."""
    if not spec.image_uri:
        raise ValidationFailed.at(
            ["body", "image_uri"],
            f"on AWS {where} runs a container image: give image_uri (an image built on the hatchway action base "
            "image and pushed to ECR); docker_config builds only work with a local executor",
            "executor_unsupported",
        )
    return spec.image_uri


def resource_name(prefix: str, project_id: str, spec: ActionSpec, limit: int) -> str:
    """A name per (project, action, effective digest): readable, unique, within ``limit`` characters."""
    key = hashlib.sha256(f"{project_id}/{spec.name}/{spec.digest()}".encode()).hexdigest()[:16]
    room = limit - len(prefix) - len(key) - 2
    slug = re.sub(r"[^A-Za-z0-9-]", "-", spec.name)[:room].strip("-")
    return f"{prefix}-{slug}-{key}" if slug else f"{prefix}-{key}"


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


class LambdaExecutor:
    """Sync calls as synchronous invocations of one container Lambda per action version.

    An attempt executor (:class:`hatchway.ports.AttemptExecutor`) that writes its own no-op hooks:
    aws/ and executors/ know nothing of each other.
    """

    name = "lambda"
    stages_files = False

    def __init__(
        self,
        aws: AwsClients,
        role_arn: str | None,
        prefix: str = "hatchway",
        max_log_bytes: int = 10 * 1024 * 1024,
        max_stdout_bytes: int = 6 * 1024 * 1024,
        kill_grace_seconds: float = 1.0,
        probe: ImageProbe | None = None,
    ) -> None:
        self.aws = aws
        #: what a local Docker engine, where one is at hand, shows of an image at registration
        self.probe = probe or ImageProbe(None)
        self.role_arn = role_arn
        self.prefix = prefix
        self.max_log_bytes = max_log_bytes
        self.max_stdout_bytes = max_stdout_bytes
        self.kill_grace_seconds = kill_grace_seconds
        #: functions seen Active by this process (a new one is Pending for seconds to minutes)
        self._active: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings, aws: AwsClients | None = None) -> LambdaExecutor:
        return cls(
            aws or AwsClients.from_settings(settings),
            settings.aws.lambda_role_arn,
            settings.aws.resource_prefix,
            settings.executors.max_log_bytes,
            settings.executors.max_sync_stdout_bytes,
            min(settings.runs.kill_grace_seconds, 1.0),
            ImageProbe.from_settings(settings),
        )

    @property
    def client(self) -> Any:
        return self.aws.client("lambda")

    def function_name(self, project_id: str, spec: ActionSpec) -> str:
        return resource_name(f"{self.prefix}-{ACTION_FUNCTION_INFIX}", project_id, spec, 64)

    @property
    def log_group(self) -> str:
        """Where every action function logs (template.yaml's ActionLogGroup, with its retention)."""
        return f"/{self.prefix}/actions"

    def check(self, spec: ActionSpec, invoked: str) -> None:
        image_required(spec, "a sync action")

    def function_config(self, project_id: str, spec: ActionSpec) -> dict[str, Any]:
        """What ``CreateFunction`` gets for ``spec`` (without the name and code)."""
        compute = spec.compute_requirements
        image_config: dict[str, Any] = {"EntryPoint": ADAPTER_ENTRY_POINT, "Command": [ADAPTER_HANDLER]}
        workdir = spec.container_parameters.workdir if spec.container_parameters else None
        if workdir and workdir.startswith("/"):
            image_config["WorkingDirectory"] = workdir
        return {
            "Role": self.role_arn,
            "Timeout": SYNC_LIMIT_SECONDS,
            "MemorySize": clamp(compute.memory, MIN_MEMORY, MAX_MEMORY),
            "EphemeralStorage": {"Size": clamp(compute.storage * 1024, MIN_STORAGE_MB, MAX_STORAGE_MB)},
            "ImageConfig": image_config,
            "Environment": {"Variables": {"HATCHWAY_ADAPTER_ROOT": "/tmp"}},  # noqa: S108 - Lambda's only writable dir
            "LoggingConfig": {"LogGroup": self.log_group},
            "Description": f"hatchway sync actions of {spec.name} ({spec.digest()[:19]}) in {project_id}",
        }

    def vet(self, project_id: str, spec: ActionSpec) -> None:
        """At registration, before anything is made: an image a local Docker engine shows cannot answer
        as a function is refused (:mod:`hatchway.aws.images`)."""
        if spec.sync_actions:
            self.probe.check(image_required(spec, "a sync action"), "lambda")

    def prepare(self, project_id: str, spec: ActionSpec) -> None:
        """Create the action version's function, or bring an existing one to the derived settings."""
        if not spec.sync_actions:
            return
        image = image_required(spec, "a sync action")
        reserved = reserved_concurrency(spec)
        if not self.role_arn:
            raise InternalError("HATCHWAY_LAMBDA_ROLE_ARN is not set: sync actions cannot get a function")
        name = self.function_name(project_id, spec)
        wanted = self.function_config(project_id, spec)
        client = self.client
        with translate("AWS Lambda"):
            try:
                current = client.get_function_configuration(FunctionName=name)
            except client.exceptions.ResourceNotFoundException:
                current = None
            if current is None:
                # a concurrent registration of the same version may have created it first
                with contextlib.suppress(client.exceptions.ResourceConflictException):
                    client.create_function(
                        FunctionName=name,
                        PackageType="Image",
                        Code={"ImageUri": image},
                        Tags={"hatchway:project": project_id, "hatchway:action": spec.name},
                        **wanted,
                    )
            elif _differs(current, wanted):
                client.update_function_configuration(FunctionName=name, **wanted)
        if reserved is not None:
            self._reserve(name, reserved)

    def _reserve(self, name: str, reserved: int) -> None:
        client = self.client
        with translate("AWS Lambda"):
            try:
                client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=reserved)
            except client.exceptions.InvalidParameterValueException:
                raise ValidationFailed.at(
                    ["body", "metadata", RESERVED_CONCURRENCY_KEY],
                    f"AWS Lambda cannot reserve {reserved} concurrent executions in this account (it keeps "
                    "100 unreserved within the account's limit): lower it, or ask AWS for a higher limit",
                ) from None

    def execute(self, invocation: Invocation, collector: OutputCollector, cancel: threading.Event) -> AttemptResult:
        # A sync call cannot be cancelled mid-invoke (nobody knows its run id before it answers).
        if invocation.tmp_source is not None or invocation.input_files:
            return AttemptResult(platform_error=FILES_UNSUPPORTED)  # refused at submit; never silently dropped
        name = self.function_name(invocation.project_id, invocation.spec)
        payload = adapter_payload(
            invocation,
            kill_grace_seconds=self.kill_grace_seconds,
            max_log_bytes=self.max_log_bytes,
            max_stdout_bytes=self.max_stdout_bytes,
            timeout_margin=TIMEOUT_MARGIN_SECONDS,
        )
        started = time.monotonic()
        waited = self._await_active(name, invocation.seconds_left - TIMEOUT_MARGIN_SECONDS)
        if waited is not None:
            waited.duration_ms = _ms(started)
            return waited
        try:
            answer = self.client.invoke(
                FunctionName=name, InvocationType="RequestResponse", Payload=json.dumps(payload).encode()
            )
            body = answer["Payload"].read()
        except Exception as exc:
            return self._failed_call(exc, invocation, started)
        if answer.get("FunctionError"):
            return _function_error(body, started)
        try:
            outcome = json.loads(body)
        except ValueError:
            return AttemptResult(platform_error="the runtime adapter's answer is not JSON", duration_ms=_ms(started))
        if not isinstance(outcome, dict):
            return AttemptResult(
                platform_error="the runtime adapter answered in an unknown format", duration_ms=_ms(started)
            )
        execution = result_from_outcome(outcome, collector)
        execution.duration_ms = execution.duration_ms or _ms(started)
        return execution

    def _await_active(self, name: str, seconds: float) -> AttemptResult | None:
        """None once ``name`` can take the call. A function Lambda is still creating (``Pending``)
        refuses invocations, so the first call of a new version waits for it, within ``seconds``;
        past them the call is unavailable (a platform failure: retried within the run's budget). A
        function Lambda could not create (``Failed``) is a platform error with Lambda's reason."""
        if name in self._active:
            return None
        deadline, delay = time.monotonic() + seconds, ACTIVE_POLL_SECONDS[0]
        while True:
            try:
                config = self.client.get_function_configuration(FunctionName=name)
            except Exception:
                return None  # the invoke meets the same problem and answers it (a missing function is made)
            state = config.get("State") or "Active"
            if state == "Failed":
                reason = config.get("StateReason") or config.get("StateReasonCode") or "no reason given"
                return AttemptResult(
                    platform_error=f"AWS Lambda could not create this action version's function ({reason})"
                )
            if state != "Pending":  # Active, or Inactive: an invoke brings an inactive one back
                if state == "Active":
                    self._active.add(name)
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return AttemptResult(
                    unavailable="the function of this action version is still being created; try again shortly"
                )
            time.sleep(min(delay, left))  # polling AWS, which tells no one when a function is ready
            delay = min(delay * 2, ACTIVE_POLL_SECONDS[1])

    def release(self, project_id: str, spec: ActionSpec) -> None:
        """Delete the function of a deleted action version (one already gone is fine). Another
        environment registering the same version shares it: its next call makes it again."""
        if not spec.sync_actions:
            return
        name = self.function_name(project_id, spec)
        self._active.discard(name)
        client = self.client
        with translate("AWS Lambda"), contextlib.suppress(client.exceptions.ResourceNotFoundException):
            client.delete_function(FunctionName=name)

    def recover(self) -> int:
        return 0  # nothing runs here between calls

    def close(self) -> None:
        """Nothing to release: the client is shared and made on first use."""

    def _failed_call(self, exc: Exception, invocation: Invocation, started: float) -> AttemptResult:
        from botocore.exceptions import ReadTimeoutError

        if isinstance(exc, ReadTimeoutError):
            return AttemptResult(timed_out=True, duration_ms=_ms(started))
        code = error_code(exc)
        self._active.discard(self.function_name(invocation.project_id, invocation.spec))
        if code == "ResourceNotFoundException":
            # the version was registered before this backend, or its function was removed: make it
            try:
                self.prepare(invocation.project_id, invocation.spec)
            except Exception as again:
                return AttemptResult(unavailable=f"the function of this action version cannot be created ({again})")
            return AttemptResult(unavailable="the function of this action version is being created; try again shortly")
        if code in BUSY_CODES or is_unreachable(exc):
            return AttemptResult(unavailable="AWS Lambda cannot take the call now; try again shortly")
        return AttemptResult(platform_error=f"AWS Lambda refused the invocation ({code or type(exc).__name__})")


def reserved_concurrency(spec: ActionSpec) -> int | None:
    """``metadata.reserved_concurrency`` of an action.json, checked (a 422 when it is not a count)."""
    value = spec.metadata.get(RESERVED_CONCURRENCY_KEY)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RESERVED_CONCURRENCY:
        raise ValidationFailed.at(
            ["body", "metadata", RESERVED_CONCURRENCY_KEY],
            f"the reserved concurrency of the action's Lambda function is a whole number from 0 (calls "
            f"refused) to {MAX_RESERVED_CONCURRENCY}",
        )
    return value


def _function_error(body: bytes, started: float) -> AttemptResult:
    """A function error: the adapter did not answer (timeout, crash, out of memory)."""
    try:
        error = json.loads(body)
    except ValueError:
        error = {}
    kind = str(error.get("errorType") or "")
    message = str(error.get("errorMessage") or "")
    if "ResponseSizeTooLarge" in kind or "payload size exceeded" in message.lower():
        # the adapter fits its answer in the limit: an image whose hatchway runtime predates that
        return AttemptResult(
            platform_error=f"the function's answer is over Lambda's {LAMBDA_RESPONSE_BYTES}-byte response limit "
            "(rebuild the image on the current hatchway base image: its adapter fits the answer)",
            duration_ms=_ms(started),
        )
    if "timed out" in message.lower() or kind.endswith("Timedout"):
        return AttemptResult(timed_out=True, duration_ms=_ms(started))
    if "signal: killed" in message or "memory" in message.lower():
        return AttemptResult(oom=True, exit_code=137, duration_ms=_ms(started))
    return AttemptResult(platform_error=f"the function failed ({kind or 'unknown error'})", duration_ms=_ms(started))


def _differs(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    if current.get("Role") != wanted["Role"] or current.get("Timeout") != wanted["Timeout"]:
        return True
    if current.get("MemorySize") != wanted["MemorySize"]:
        return True
    if (current.get("EphemeralStorage") or {}).get("Size") != wanted["EphemeralStorage"]["Size"]:
        return True
    logging = current.get("LoggingConfig")  # absent where Lambda does not answer it (moto)
    if logging is not None and logging.get("LogGroup") != wanted["LoggingConfig"]["LogGroup"]:
        return True
    image = (current.get("ImageConfigResponse") or {}).get("ImageConfig") or {}
    return bool(image) and image != wanted["ImageConfig"]


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


if TYPE_CHECKING:  # mypy checks that it answers the port
    from hatchway import ports

    def _implements(executor: LambdaExecutor) -> ports.AttemptExecutor:
        return executor
