"""A gateway on the aws backend wired to moto as a deployment is: what the AWS functional tests share.

moto runs no containers: a Lambda's answer is made by calling the real runtime adapter with the
exact payload the gateway sent (what awslambdaric would do in the function), and a job's container
is played by :func:`hatchway.runtime.remote.run_attempt` - the adapter's ``--run`` entry - in this process,
over the package's host (:func:`hatchway.wiring.container_attempts`).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from hatchway.aws.aws_lambda import LambdaExecutor
from hatchway.aws.clients import AwsClients
from hatchway.domain.runs import RunRequest, RunStatus
from hatchway.domain.tenants import Principal
from hatchway.executors.process import ProcessExecutor
from hatchway.runtime import adapter
from hatchway.runtime.remote import PROJECT_VARIABLE, run_attempt
from hatchway.services import Services
from hatchway.wiring import build_placement, container_attempts
from tests.awsmock import (
    REGION,
    CallCounter,
    aws_services,
    aws_settings,
    container_environment,
    container_settings,
    make_infrastructure,
    moto_in_process,
    queue_lambda_result,
)

ADMIN = Principal(None, None, frozenset({"admin"}))
P, ENV = "proj_local", "development"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/actions/echo:1"
SCRIPT = (
    "import json,os,sys\n"
    "d=os.environ['HATCHWAY_DATA_DIR']\n"
    "c=json.load(open(d+'/config.json'))\n"
    "p=c['parameters']\n"
    "if p.get('#token'): print('secret is', p['#token'], file=sys.stderr)\n"
    "code=int(p.get('exit','0'))\n"
    "if code==1: print('bad input: '+p.get('who',''), file=sys.stderr)\n"
    "if code: sys.exit(code)\n"
    "if c['action']=='run':\n"
    "    json.dump({'hi': p['who'], 'attempt': c['run']['attempt']}, open(d+'/out/result.json','w'))\n"
    "    json.dump({'rows': 3}, open(d+'/out/exports.json','w'))\n"
    "else:\n"
    "    print(json.dumps({'sync': p['who']}))\n"
)
ACTION: dict[str, Any] = {
    "name": "echo",
    "image_uri": IMAGE,
    "sync_actions": ["hello"],
    "parameters": [{"name": "who", "required": True}, {"name": "exit", "default": "0"}, {"name": "#token"}],
    "compute_requirements": {"vCPU": 1024, "memory": 4096, "storage": 50},
    "container_parameters": {
        "entry_point": [sys.executable, "-c"],
        "command": [SCRIPT],
        "env_vars": {"GREETING": "hello"},
    },
    "timeout": 10,
    "retry": {"count": 1, "interval_seconds": 0},
}


@dataclass
class Stack:
    services: Services
    counter: CallCounter
    session: Any
    settings: Any

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=REGION)


@contextlib.contextmanager
def moto_infrastructure() -> Iterator[dict[str, Any]]:
    """moto in-process with what template.yaml makes (slow to make: a VPC, roles, a queue; make it
    once per module): the settings that point at it."""
    with moto_in_process():
        yield make_infrastructure(boto3.session.Session(region_name=REGION), "hwtests")


def build_stack(tmp_path: Path, infrastructure: dict[str, Any], run_executor: type[Any]) -> Stack:
    """Services with their own table, key, bucket and name prefix, and a session that counts calls."""
    session = boto3.session.Session(region_name=REGION)
    counter = CallCounter(session)
    settings = aws_settings(tmp_path / "home").with_(**infrastructure)
    aws = AwsClients(REGION, None, session)
    placement = build_placement(
        settings, sync=LambdaExecutor.from_settings(settings, aws), engine=run_executor.from_settings(settings, aws)
    )
    services = aws_services(settings, session, placement)
    counter.hooks.append(_lambda_runtime)
    return Stack(services, counter, session, settings)


def _lambda_runtime(service: str, operation: str, params: dict[str, Any]) -> None:
    """Play the function: the real adapter answers the exact payload the gateway sends."""
    if (service, operation) == ("lambda", "Invoke") and params.get("FunctionName", "").startswith("hw"):
        queue_lambda_result(adapter.invoke(json.loads(params["Payload"])))


def container(stack: Stack, run_id: str, owner: str) -> int:
    """One attempt of the run, as the job's container does it (``--run RUN_ID``, with the variables
    the engine gave its job or task)."""
    aws = AwsClients(REGION, None, stack.session)
    environment = submitted_environment(stack, run_id)
    settings = container_settings(stack.settings, environment)
    inside = aws_services(
        settings, stack.session, build_placement(settings, sync=ProcessExecutor.from_settings(settings))
    )
    try:
        host = container_attempts(inside, aws=aws)
        return run_attempt(host, run_id, owner, project_id=environment.get(PROJECT_VARIABLE))
    finally:
        inside.placement.close()


def submitted_environment(stack: Stack, run_id: str) -> dict[str, str]:
    """The variables the engine gave the run's current job or task."""
    run = stack.services.repos.runs.get_run(run_id)
    assert run is not None and run.external_id is not None
    return container_environment(AwsClients(REGION, None, stack.session), run.external_id)


def submit(stack: Stack, **parameters: str) -> tuple[str, str]:
    """Start a run of the echo action; its id and its job or task."""
    submitted = stack.services.runs.submit(ADMIN, P, ENV, "echo", RunRequest(parameters))
    run = stack.services.repos.runs.get_run(submitted.id)
    assert run is not None and run.external_id is not None
    return run.id, run.external_id


def status(stack: Stack, run_id: str) -> RunStatus:
    run = stack.services.repos.runs.get_run(run_id)
    assert run is not None
    return run.status


def watch(stack: Stack, operation: str) -> list[dict[str, Any]]:
    """The parameters of every later ``operation`` call."""
    seen: list[dict[str, Any]] = []
    stack.counter.hooks.append(lambda _, name, params: seen.append(params) if name == operation else None)
    return seen


def batch_event(run_id: str, job_id: str, status: str, **detail: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "detail-type": "Batch Job State Change",
        "source": "aws.batch",
        "detail": {
            "jobName": run_id,
            "jobId": job_id,
            "status": status,
            "parameters": {"run_id": run_id},
            # a job's detail carries its tags and its container's variables (those of submit too)
            "tags": {"hatchway:run": run_id, "hatchway:project": P},
            **detail,
        },
    }


def ecs_event(run_id: str, task_arn: str, status: str, exit_code: int | None = None, **detail: Any) -> dict[str, Any]:
    containers = [
        {"name": "action", "lastStatus": status, **({"exitCode": exit_code} if exit_code is not None else {})}
    ]
    return {
        "version": "0",
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "detail": {
            "startedBy": run_id,
            "taskArn": task_arn,
            "lastStatus": status,
            "containers": containers,
            # a task's detail carries the overrides it was started with
            "overrides": {
                "containerOverrides": [{"name": "action", "environment": [{"name": PROJECT_VARIABLE, "value": P}]}]
            },
            **detail,
        },
    }
