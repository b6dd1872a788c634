"""AWS doubles for tests: moto in-process or as a real HTTP server, and counting AWS calls.

moto does not serialise requests, while DynamoDB applies each conditional write atomically; both
helpers put one lock around moto's request handling, so the double keeps the guarantee the store
relies on (conditional writes never both win) when tests race threads against it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from tests.helpers import free_port

REGION = "us-east-1"
ACCOUNT = "123456789012"
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
#: moto runs Lambda functions and Batch jobs without Docker: an invoke answers a queued result
SIMPLE = {"lambda": {"use_docker": False}, "batch": {"use_docker": False}}

_moto_lock = threading.RLock()


@contextlib.contextmanager
def patched_env(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def moto_in_process() -> Iterator[None]:
    """moto's ``mock_aws`` with fake credentials and serialised request handling."""
    from moto import mock_aws
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request

    @functools.wraps(original)
    def serialised(self: Any, request: Any) -> Any:
        with _moto_lock:
            return original(self, request)

    BotocoreStubber.process_request = serialised  # type: ignore[method-assign]
    try:
        with patched_env(FAKE_CREDENTIALS), mock_aws(config=SIMPLE):  # type: ignore[arg-type]
            yield
    finally:
        BotocoreStubber.process_request = original  # type: ignore[method-assign]


def queue_lambda_result(result: Any) -> None:
    """What moto's next in-process Lambda invoke answers."""
    from moto.awslambda_simple.models import lambda_simple_backends

    payload = result if isinstance(result, str) else json.dumps(result)
    lambda_simple_backends[ACCOUNT][REGION].lambda_simple_results_queue.append(payload)


class MotoServer:
    """moto as a real HTTP endpoint in this process (``AWS_ENDPOINT_URL`` for subprocesses)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> MotoServer:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)

        def locked(environ: Any, start_response: Any) -> Any:
            with _moto_lock:
                return list(app(environ, start_response))

        self._server = make_server("127.0.0.1", self.port, locked, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()
        self.configure()
        return self

    def configure(self) -> None:
        httpx.post(f"{self.url}/moto-api/config", json=SIMPLE, timeout=10).raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()
        self.configure()

    def queue_lambda_result(self, result: Any) -> None:
        payload = result if isinstance(result, str) else json.dumps(result)
        httpx.post(
            f"{self.url}/moto-api/static/lambda-simple/response",
            json={"results": [payload], "region": REGION},
            timeout=10,
        ).raise_for_status()

    def env(self) -> dict[str, str]:
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": self.url}

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


class CallCounter:
    """Counts AWS API calls made through clients of one boto3 session.

    botocore emits ``before-parameter-build`` once per API call (retries do not repeat it) with the
    call's own parameters, which ``hooks`` also receive.
    """

    def __init__(self, session: Any) -> None:
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.hooks: list[Callable[[str, str, dict[str, Any]], None]] = []
        session.events.register("before-parameter-build", self._seen)

    def _seen(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        service = model.service_model.service_name
        with self._lock:
            self.calls.append((service, model.name))
        for hook in self.hooks:
            hook(service, model.name, params)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    def count(self, service: str | None = None, operation: str | None = None) -> int:
        with self._lock:
            return sum(
                1 for s, o in self.calls if (service is None or s == service) and (operation is None or o == operation)
            )

    def summary(self) -> Counter[str]:
        with self._lock:
            return Counter(f"{s}.{o}" for s, o in self.calls)


def localstack_endpoint() -> str | None:
    return os.environ.get("LOCALSTACK_ENDPOINT") or None


def aws_settings(home: Any, endpoint: str | None = None, **overrides: Any) -> Any:
    """Settings of the aws backend with unique resource names (tests share one moto)."""
    import uuid

    from tests.conftest import make_settings

    suffix = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "backend": "aws",
        "table_name": f"hatchway-{suffix}",
        "kms_key_id": f"alias/hatchway-{suffix}",
        "bucket": f"hatchway-outputs-{suffix}",
        "resource_prefix": f"hw{suffix}",
        "aws_region": REGION,
        "aws_endpoint_url": endpoint,
        # these tests are about AWS, not host isolation (tests/integration/test_sandbox.py)
        "sandbox": "none",
    }
    values.update(overrides)
    return make_settings(home, **values)


def aws_services(settings: Any, session: Any, placement: Any) -> Any:
    """Services on the aws backend whose every AWS client comes from ``session`` (bootstrapped)."""
    from hatchway.aws.clients import AwsClients
    from hatchway.wiring import aws_bootstrap, bootstrap, build_services

    aws = AwsClients(settings.aws.aws_region, settings.aws.aws_endpoint_url, session)
    aws_bootstrap(settings, aws)
    services = build_services(settings, placement=placement, aws=aws)
    bootstrap(services)
    return services


def container_environment(aws: Any, external_id: str) -> dict[str, str]:
    """The variables a Batch job or ECS task was given at submit (what its container sees beside its
    definition's), as moto answers them: ``HATCHWAY_RUN_PROJECT`` and the like."""
    if ":task/" in external_id:
        cluster = external_id.split(":task/", 1)[1].split("/")[0]
        [task] = aws.client("ecs").describe_tasks(cluster=cluster, tasks=[external_id])["tasks"]
        overrides = task.get("overrides", {}).get("containerOverrides") or []
        variables = [variable for each in overrides for variable in each.get("environment") or []]
    else:
        [job] = aws.client("batch").describe_jobs(jobs=[external_id])["jobs"]
        variables = job["container"].get("environment") or []
    return {variable["name"]: variable["value"] for variable in variables}


def container_settings(settings: Any, environment: dict[str, str]) -> Any:
    """``settings`` as a run container sees them with ``environment`` (its job's or task's variables)."""
    from hatchway.config import AwsSettings

    legacy = AwsSettings.from_env(environment).is_legacy_run_keys_enabled
    return settings.with_(is_legacy_run_keys_enabled=legacy)


def make_infrastructure(session: Any, prefix: str) -> dict[str, Any]:
    """What template.yaml would have made for the executors: roles, a VPC, a Batch queue, an ECS
    cluster, the task policy. Returns the settings that point at them."""
    iam = session.client("iam", region_name=REGION)
    ec2 = session.client("ec2", region_name=REGION)
    batch = session.client("batch", region_name=REGION)
    ecs = session.client("ecs", region_name=REGION)

    def role(name: str, service: str) -> str:
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
        arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        return arn

    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}]}
    policy_arn = iam.create_policy(PolicyName=f"{prefix}-task", PolicyDocument=json.dumps(policy))["Policy"]["Arn"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"{prefix}-tasks", Description="tasks", VpcId=vpc)["GroupId"]
    environment = batch.create_compute_environment(
        computeEnvironmentName=f"{prefix}-fargate",
        type="MANAGED",
        state="ENABLED",
        computeResources={"type": "FARGATE", "maxvCpus": 64, "subnets": [subnet], "securityGroupIds": [group]},
        serviceRole=role(f"{prefix}-batch-service", "batch.amazonaws.com"),
    )["computeEnvironmentArn"]
    queue = batch.create_job_queue(
        jobQueueName=f"{prefix}-runs",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
    )["jobQueueName"]
    cluster = ecs.create_cluster(clusterName=f"{prefix}-runs")["cluster"]["clusterName"]
    return {
        "lambda_role_arn": role(f"{prefix}-functions", "lambda.amazonaws.com"),
        "execution_role_arn": role(f"{prefix}-execution", "ecs-tasks.amazonaws.com"),
        "task_policy_arn": policy_arn,
        "batch_job_queue": queue,
        "ecs_cluster": cluster,
        "subnets": (subnet,),
        "security_groups": (group,),
        "log_group": f"/{prefix}/runs",
    }


def answer_instead(client: Any, operation: str, status: int, parsed: dict[str, Any]) -> None:
    """The next ``operation`` call of ``client`` gets this answer instead of reaching moto - how a
    test makes AWS fail the way only the real service can (throttling, a function error)."""
    from botocore.awsrequest import AWSResponse

    event = f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"
    unique = f"answer-instead-{id(parsed)}"

    def answer(**_: Any) -> Any:
        client.meta.events.unregister(event, unique_id=unique)
        return AWSResponse("https://aws.invalid", status, {}, None), parsed

    client.meta.events.register(event, answer, unique_id=unique)


def lambda_error(code: str, status: int = 429) -> dict[str, Any]:
    return {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


def lambda_function_error(body: dict[str, Any]) -> dict[str, Any]:
    import io

    from botocore.response import StreamingBody

    raw = json.dumps(body).encode()
    return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": StreamingBody(io.BytesIO(raw), len(raw))}


def answer_with_adapter(counter: CallCounter) -> None:
    """Play every container Lambda on ``counter``'s session: moto's answer to an ``Invoke`` of a
    hatchway payload is what ``python -I -m hatchway.runtime.adapter`` - the code the function
    image runs - prints for that payload, run in a subprocess of its own."""
    import subprocess
    import sys

    def invoke(service: str, operation: str, params: dict[str, Any]) -> None:
        if (service, operation) != ("lambda", "Invoke"):
            return
        payload = params.get("Payload")
        text = payload.decode() if isinstance(payload, bytes) else str(payload or "")
        if '"hatchway"' not in text:
            return
        seconds = float(json.loads(text).get("timeout_seconds") or 30) + 30
        done = subprocess.run(
            [sys.executable, "-I", "-m", "hatchway.runtime.adapter"],
            input=text,
            capture_output=True,
            text=True,
            timeout=seconds,
            check=False,
        )
        queue_lambda_result(done.stdout if done.returncode == 0 else {"errorMessage": done.stderr[-500:]})

    counter.hooks.append(invoke)
