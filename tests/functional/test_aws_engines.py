"""The AWS run engines on moto: what registration creates (job and task definitions, the project's
task role, and the sync function beside them), runs on Batch and ECS settled by their state-change
events, retries, cancel, call counts.

moto runs no containers: a job's container is played by :func:`hatchway.runtime.remote.run_attempt` - the
adapter's ``--run`` entry - in this process.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from hatchway.aws.aws_lambda import LambdaExecutor
from hatchway.aws.batch import BatchEngine
from hatchway.aws.ecs import EcsEngine
from hatchway.domain.runs import RunRequest, RunStatus
from hatchway.errors import ValidationFailed
from hatchway.runtime.remote import RETRY_EXIT_CODE
from tests.functional.awsstack import (
    ACTION,
    ADMIN,
    ENV,
    IMAGE,
    P,
    Stack,
    batch_event,
    container,
    ecs_event,
    status,
    submit,
    watch,
)

pytestmark = pytest.mark.aws


# ---------------------------------------------------------------------------------------------
# registration


def test_registration_creates_the_function_and_job_definition_with_derived_settings(batch: Stack) -> None:
    services = batch.services
    record, created = services.actions.register(ADMIN, P, ENV, ACTION)
    assert created
    lambda_executor = services.placement.sync
    batch_executor = services.placement.engine
    assert isinstance(lambda_executor, LambdaExecutor) and isinstance(batch_executor, BatchEngine)
    spec = services.actions.resolve(P, ENV, "echo").spec

    function = batch.client("lambda").get_function(FunctionName=lambda_executor.function_name(P, spec))
    config = function["Configuration"]
    assert config["PackageType"] == "Image" and function["Code"]["ImageUri"] == IMAGE
    assert (config["Timeout"], config["MemorySize"], config["EphemeralStorage"]) == (30, 4096, {"Size": 10240})
    assert config["Role"] == batch.settings.aws.lambda_role_arn
    assert config["ImageConfigResponse"]["ImageConfig"] == {
        "EntryPoint": ["python3", "-m", "awslambdaric"],
        "Command": ["hatchway.runtime.adapter.lambda_handler"],
    }

    name = batch_executor.definition_name(P, spec, ENV)
    [definition] = batch.client("batch").describe_job_definitions(jobDefinitionName=name, status="ACTIVE")[
        "jobDefinitions"
    ]
    container = definition["containerProperties"]
    assert definition["platformCapabilities"] == ["FARGATE"]
    assert container["image"] == IMAGE
    assert container["command"] == ["python3", "-m", "hatchway.runtime.adapter", "--run", "Ref::run_id"]
    assert {r["type"]: r["value"] for r in container["resourceRequirements"]} == {"VCPU": "1", "MEMORY": "4096"}
    assert container["ephemeralStorage"] == {"sizeInGiB": 50}
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert env["GREETING"] == "hello" and env["HATCHWAY_TABLE_NAME"] == batch.settings.store.table_name
    assert env["HATCHWAY_KMS_KEY_ID"] == batch.settings.aws.kms_key and env["HATCHWAY_BACKEND"] == "aws"
    assert definition["timeout"] == {"attemptDurationSeconds": 10 * 60 + 60}
    assert definition["retryStrategy"]["evaluateOnExit"][0]["onExitCode"] == "1"
    assert definition["retryStrategy"]["evaluateOnExit"][0]["action"].upper() == "EXIT"
    assert container["executionRoleArn"] == batch.settings.aws.execution_role_arn
    # the task role of the project's runs in this environment, tagged for the key policy's
    # encryption-context conditions (and the task policy's keys)
    role_name = container["jobRoleArn"].rsplit("/", 1)[-1]
    iam = batch.client("iam")
    assert {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=role_name)["Tags"]} == {
        "hatchway-project": P,
        "hatchway-environment": ENV,
    }
    assert iam.get_role(RoleName=role_name)["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == (
        batch.settings.aws.task_policy_arn
    )

    # registering the same spec again reuses both; a changed spec gets its own
    batch.counter.clear()
    assert services.actions.register(ADMIN, P, ENV, ACTION)[1] is False
    assert batch.counter.count("lambda", "CreateFunction") == 0
    assert batch.counter.count("batch", "RegisterJobDefinition") == 0
    bigger = {**ACTION, "compute_requirements": {"vCPU": 16384, "memory": 122880, "storage": 21}}
    services.actions.register(ADMIN, P, ENV, bigger)
    spec2 = services.actions.resolve(P, ENV, "echo").spec
    assert lambda_executor.function_name(P, spec2) != lambda_executor.function_name(P, spec)
    config2 = batch.client("lambda").get_function_configuration(FunctionName=lambda_executor.function_name(P, spec2))
    assert config2["MemorySize"] == 10240  # Lambda's maximum
    [definition2] = batch.client("batch").describe_job_definitions(
        jobDefinitionName=batch_executor.definition_name(P, spec2, ENV), status="ACTIVE"
    )["jobDefinitions"]
    assert {r["type"]: r["value"] for r in definition2["containerProperties"]["resourceRequirements"]} == {
        "VCPU": "16",
        "MEMORY": "122880",
    }


def test_an_action_without_an_image_is_refused_and_nothing_is_stored(batch: Stack) -> None:
    document = {**ACTION, "image_uri": None, "docker_config": {"context": "."}}
    document.pop("image_uri")
    with pytest.raises(ValidationFailed) as refused:
        batch.services.actions.register(ADMIN, P, ENV, document)
    assert refused.value.details[0]["loc"] == ["body", "image_uri"]
    assert batch.services.repos.actions.get_action(P, ENV, "echo") is None


def test_an_http_action_needs_no_image_function_or_definition(batch: Stack) -> None:
    # the gateway makes an HTTP action's call itself: nothing to create on AWS
    batch.counter.clear()
    record, created = batch.services.actions.register(
        ADMIN, P, ENV, {"name": "ping", "sync_actions": ["get"], "http": {"url": "https://example.invalid/ping"}}
    )
    assert created and record.spec["http"]["url"] == "https://example.invalid/ping"
    assert batch.counter.count("lambda") == 0 and batch.counter.count("batch") == 0


def test_the_ecs_task_definition_is_derived_from_the_spec(ecs: Stack) -> None:
    ecs.services.actions.register(
        ADMIN, P, ENV, {**ACTION, "container_parameters": {**ACTION["container_parameters"], "workdir": "/app"}}
    )
    executor = ecs.services.placement.engine
    assert isinstance(executor, EcsEngine)
    spec = ecs.services.actions.resolve(P, ENV, "echo").spec
    family = executor.definition_name(P, spec, ENV)
    definition = ecs.client("ecs").describe_task_definition(taskDefinition=family)["taskDefinition"]
    assert definition["requiresCompatibilities"] == ["FARGATE"] and definition["networkMode"] == "awsvpc"
    assert (definition["cpu"], definition["memory"]) == ("1024", "4096")
    assert definition["ephemeralStorage"] == {"sizeInGiB": 50}
    [container] = definition["containerDefinitions"]
    assert container["entryPoint"] == ["python3", "-m", "hatchway.runtime.adapter"]
    assert container["workingDirectory"] == "/app" and container["image"] == IMAGE
    assert {e["name"]: e["value"] for e in container["environment"]}["GREETING"] == "hello"
    assert definition["taskRoleArn"].endswith(f"-task-{P}-{ENV}")


# ---------------------------------------------------------------------------------------------
# runs on Batch


def test_an_async_submit_makes_at_most_three_aws_calls(batch: Stack) -> None:
    services = batch.services
    services.actions.register(ADMIN, P, ENV, ACTION)
    submitted: list[dict[str, Any]] = []
    batch.counter.hooks.append(lambda s, o, params: submitted.append(params) if o == "SubmitJob" else None)
    batch.counter.clear()
    answer = services.runs.submit(ADMIN, P, ENV, "echo", RunRequest({"who": "w"}, retries=2)).to_api()
    assert answer["status"] == "ENQUEUED"
    calls = batch.counter.summary()
    assert sum(calls.values()) <= 3, calls
    assert calls == {"dynamodb.GetItem": 1, "batch.SubmitJob": 1, "dynamodb.PutItem": 1}
    [params] = submitted
    assert params["jobName"] == answer["id"] and params["parameters"] == {"run_id": answer["id"]}
    # its 3 attempts, and 3 more for attempts the platform fails (HATCHWAY_MAX_LOST_ATTEMPTS)
    assert params["retryStrategy"] == {"attempts": 6, "evaluateOnExit": [{"onExitCode": "1", "action": "EXIT"}]}
    assert params["jobQueue"] == batch.settings.aws.batch_job_queue
    run = services.repos.runs.get_run(answer["id"])
    assert run is not None and run.external_id is not None
    [job] = batch.client("batch").describe_jobs(jobs=[run.external_id])["jobs"]
    assert job["jobName"] == run.id
    # a remote run is never claimed by a local worker
    assert services.repos.runs.claim("local-worker", 30) is None


def test_a_batch_run_succeeds_through_its_container_and_events(batch: Stack) -> None:
    services = batch.services
    services.actions.register(ADMIN, P, ENV, ACTION)
    token = services.tenants.encrypt(ADMIN, P, ENV, "batch-s3cret-value")
    run_id, job = submit(batch, who="w", **{"#token": token})
    # Given the job starts (the event may come before or after the container claims the run)
    assert services.remote.handle_event(batch_event(run_id, job, "RUNNING", attempts=[])) == {
        "run_id": run_id,
        "status": "INPROGRESS",
    }
    # When its container runs the attempt: it decrypts the secret itself and records the outcome
    assert container(batch, run_id, f"batch/{job}/1") == 0
    done = services.repos.runs.get_run(run_id)
    assert done is not None and done.status == RunStatus.SUCCESSFUL
    assert done.ret == {"hi": "w", "attempt": 1} and done.exports == {"rows": 3} and done.attempt == 1
    assert [e.msg for e in services.repos.runs.read_logs(run_id).items] == ["secret is [hidden]"]
    # and a copy of the record and the log lands in the outputs bucket, under the run's project
    s3 = batch.client("s3")
    prefix = f"runs/{P}/{run_id}/attempt-1/"
    saved = json.loads(s3.get_object(Bucket=batch.settings.aws.outputs_bucket, Key=prefix + "run.json")["Body"].read())
    assert saved["status"] == "SUCCESSFUL" and saved["parameters"]["#token"] == "[hidden]"
    assert (
        b"batch-s3cret-value"
        not in s3.get_object(Bucket=batch.settings.aws.outputs_bucket, Key=prefix + "logs.jsonl")["Body"].read()
    )
    # Then the job's own events change nothing, in any order, any number of times
    for event in (
        batch_event(run_id, job, "SUCCEEDED", attempts=[{"container": {"exitCode": 0}}]),
        batch_event(run_id, job, "RUNNING", attempts=[]),
        batch_event(run_id, job, "SUCCEEDED"),
    ):
        assert services.remote.handle_event(event)["status"] == "SUCCESSFUL"
    assert services.repos.runs.get_run(run_id) == done


def test_a_batch_job_that_never_ran_fails_the_run(batch: Stack) -> None:
    batch.services.actions.register(ADMIN, P, ENV, ACTION)
    run_id, job = submit(batch, who="w")
    # an event about some other job of the same name is not this run's
    assert "ignored" in batch.services.remote.handle_event(batch_event(run_id, "another-job", "FAILED"))
    assert status(batch, run_id) == RunStatus.ENQUEUED
    reason = "CannotPullContainerError: pull image manifest has been retried 5 times"
    failed_event = batch_event(run_id, job, "FAILED", statusReason=reason)
    assert batch.services.remote.handle_event(failed_event)["status"] == "FAILED"
    failed = batch.services.repos.runs.get_run(run_id)
    assert failed is not None and failed.error is not None and failed.error.kind == "platform"
    assert "CannotPullContainerError" in failed.error.message and failed.error.exception_id
    # late or repeated events leave it alone
    for event in (failed_event, batch_event(run_id, job, "RUNNING"), batch_event(run_id, job, "SUCCEEDED")):
        batch.services.remote.handle_event(event)
    assert batch.services.repos.runs.get_run(run_id) == failed


def test_a_batch_attempt_over_its_time_limit_is_a_timeout(batch: Stack) -> None:
    batch.services.actions.register(ADMIN, P, ENV, ACTION)
    run_id, job = submit(batch, who="w")
    batch.services.remote.handle_event(batch_event(run_id, job, "RUNNING"))
    batch.services.remote.handle_event(
        batch_event(run_id, job, "FAILED", statusReason="Job attempt duration exceeded timeout")
    )
    run = batch.services.repos.runs.get_run(run_id)
    assert run is not None and run.status == RunStatus.FAILED and run.error is not None
    assert run.error.kind == "timeout"


def test_batch_attempts_retry_an_application_error_but_never_a_user_error(batch: Stack) -> None:
    store = batch.services.repos.runs
    batch.services.actions.register(ADMIN, P, ENV, ACTION)
    # an application error (exit 3) with one retry: two attempts, each a Batch attempt
    run_id, job = submit(batch, who="w", exit="3")
    assert container(batch, run_id, f"batch/{job}/1") == RETRY_EXIT_CODE
    queued = store.get_run(run_id)
    assert queued is not None and queued.status == RunStatus.ENQUEUED and queued.attempt == 1
    # the stale RUNNING of attempt 1 does not move the queued run
    batch.services.remote.handle_event(batch_event(run_id, job, "RUNNING", attempts=[]))
    assert status(batch, run_id) == RunStatus.ENQUEUED
    assert container(batch, run_id, f"batch/{job}/2") == 1
    final = store.get_run(run_id)
    assert final is not None and final.status == RunStatus.FAILED and final.attempt == 2
    assert final.error is not None and final.error.kind == "application"
    # a user error (exit 1) ends at once, and exit 1 is what Batch's evaluateOnExit does not retry
    run_id, job = submit(batch, who="u", exit="1")
    assert container(batch, run_id, f"batch/{job}/1") == 1
    user = store.get_run(run_id)
    assert user is not None and user.status == RunStatus.FAILED and user.error is not None
    assert (user.error.kind, user.error.message) == ("user", "bad input: u")


def test_cancel_terminates_the_batch_job_and_its_event_ends_the_run(batch: Stack) -> None:
    services = batch.services
    services.actions.register(ADMIN, P, ENV, ACTION)
    terminated = watch(batch, "TerminateJob")
    # a queued run is cancelled at once, and its job terminated
    run_id, job = submit(batch, who="q")
    assert services.runs.cancel(ADMIN, P, ENV, run_id).status == RunStatus.TERMINATED
    assert terminated[-1]["jobId"] == job
    # a running one goes TERMINATING; the job's end makes it TERMINATED
    run_id, job = submit(batch, who="r")
    services.remote.handle_event(batch_event(run_id, job, "RUNNING"))
    assert services.runs.cancel(ADMIN, P, ENV, run_id).status == RunStatus.TERMINATING
    assert terminated[-1]["jobId"] == job
    services.remote.handle_event(batch_event(run_id, job, "FAILED", statusReason="cancelled through the hatchway API"))
    assert status(batch, run_id) == RunStatus.TERMINATED


def test_a_container_that_starts_after_a_cancel_does_not_run(batch: Stack) -> None:
    batch.services.actions.register(ADMIN, P, ENV, ACTION)
    run_id, job = submit(batch, who="w")
    batch.services.remote.handle_event(batch_event(run_id, job, "RUNNING"))
    batch.services.runs.cancel(ADMIN, P, ENV, run_id)
    assert container(batch, run_id, f"batch/{job}/1") == 1
    run = batch.services.repos.runs.get_run(run_id)
    assert run is not None and run.status == RunStatus.TERMINATED and run.ret is None


def test_apply_state_change_is_idempotent(batch: Stack) -> None:
    from hatchway.domain.runs import StateChange

    batch.services.actions.register(ADMIN, P, ENV, ACTION)
    run_id, job = submit(batch, who="w")
    change = StateChange(run_id, job, "succeeded", exit_code=0, engine="batch")
    first = batch.services.remote.apply_state_change(change)
    # (a job that succeeded without the adapter recording the run fails it: see below)
    assert first is not None and first.status == RunStatus.FAILED
    assert batch.services.remote.apply_state_change(change) == first


def test_a_batch_job_that_succeeded_without_running_the_adapter_fails_the_run(batch: Stack) -> None:
    # Given a run whose job's image has an ENTRYPOINT that ignores Batch's command: the container
    # exits 0 and the adapter never claims or records the run
    batch.services.actions.register(ADMIN, P, ENV, ACTION)
    run_id, job = submit(batch, who="w")
    remote = batch.services.remote
    assert remote.handle_event(batch_event(run_id, job, "RUNNING", attempts=[]))["status"] == "INPROGRESS"
    # When Batch says the job SUCCEEDED
    succeeded = batch_event(run_id, job, "SUCCEEDED", attempts=[{"container": {"exitCode": 0}}])
    assert remote.handle_event(succeeded) == {"run_id": run_id, "status": "FAILED"}
    # Then the run failed on the platform with a message that says why - not SUCCESSFUL with no ret
    run = batch.services.repos.runs.get_run(run_id)
    assert run is not None and run.status == RunStatus.FAILED and run.ret is None
    assert run.error is not None and run.error.kind == "platform" and run.error.code == 500 and run.error.exception_id
    assert "without running hatchway's adapter" in run.error.message and "ENTRYPOINT" in run.error.message
    assert "python3 -m hatchway.runtime.adapter --run RUN_ID" in run.error.message
    # and later events leave it so
    for event in (succeeded, batch_event(run_id, job, "RUNNING")):
        remote.handle_event(event)
    assert batch.services.repos.runs.get_run(run_id) == run


def test_a_job_whose_container_claimed_the_run_but_recorded_nothing_fails_it(batch: Stack) -> None:
    from hatchway.aws.clients import AwsClients
    from hatchway.wiring import container_attempts

    batch.services.actions.register(ADMIN, P, ENV, ACTION)
    run_id, job = submit(batch, who="w")
    # Given the adapter claimed the run and its container then ended with exit 0 without recording
    host = container_attempts(batch.services, aws=AwsClients("us-east-1", None, batch.session))
    assert host.claim(run_id, f"batch/{job}/1") is not None
    # When the job's SUCCEEDED event comes
    assert batch.services.remote.handle_event(batch_event(run_id, job, "SUCCEEDED"))["status"] == "FAILED"
    # Then the run failed, saying the container claimed it and recorded nothing
    run = batch.services.repos.runs.get_run(run_id)
    assert run is not None and run.error is not None and run.error.kind == "platform"
    assert "claimed the run but exited 0 without recording its outcome" in run.error.message


def test_a_run_without_a_result_that_went_through_the_adapter_succeeds(batch: Stack) -> None:
    # Given an action that legitimately writes no result.json
    quiet = {**ACTION, "name": "quiet", "container_parameters": {"entry_point": [sys.executable, "-c"],
                                                                "command": ["print('done')"]}}  # fmt: skip
    batch.services.actions.register(ADMIN, P, ENV, quiet)
    run_id = batch.services.runs.submit(ADMIN, P, ENV, "quiet", RunRequest({"who": "q"})).id
    job = batch.services.repos.runs.get_run(run_id).external_id  # type: ignore[union-attr]
    assert job is not None
    # When its container runs it through the adapter, and Batch's events come after
    assert container(batch, run_id, f"batch/{job}/1") == 0
    for event in (batch_event(run_id, job, "RUNNING"), batch_event(run_id, job, "SUCCEEDED")):
        assert batch.services.remote.handle_event(event)["status"] == "SUCCESSFUL"
    # Then it is SUCCESSFUL with no ret: the adapter recorded it
    run = batch.services.repos.runs.get_run(run_id)
    assert run is not None and run.status == RunStatus.SUCCESSFUL and run.ret is None and run.error is None


# ---------------------------------------------------------------------------------------------
# runs on ECS


def test_an_ecs_run_succeeds_through_its_task_and_events(ecs: Stack) -> None:
    ecs.services.actions.register(ADMIN, P, ENV, ACTION)
    started = watch(ecs, "RunTask")
    ecs.counter.clear()
    answer = ecs.services.runs.submit(ADMIN, P, ENV, "echo", RunRequest({"who": "e"})).to_api()
    assert ecs.counter.summary() == {"dynamodb.GetItem": 1, "ecs.RunTask": 1, "dynamodb.PutItem": 1}
    run_id, task = answer["id"], ecs.services.repos.runs.get_run(answer["id"]).external_id  # type: ignore[union-attr]
    assert task is not None
    [params] = started
    assert params["startedBy"] == run_id and params["launchType"] == "FARGATE"
    # the container learns its run's project (which leads the run's keys) from the task's variables
    assert params["overrides"]["containerOverrides"] == [
        {
            "name": "action",
            "command": ["--run", run_id],
            "environment": [
                {"name": "HATCHWAY_RUN_PROJECT", "value": P},
                {"name": "HATCHWAY_LEGACY_RUN_KEYS", "value": "off"},
            ],
        }
    ]
    assert params["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == list(ecs.settings.aws.subnets)
    assert task.startswith("arn:aws:ecs:")
    ecs.services.remote.handle_event(ecs_event(run_id, task, "RUNNING"))
    assert container(ecs, run_id, "ecs/task-1") == 0
    ecs.services.remote.handle_event(
        ecs_event(run_id, task, "STOPPED", 0, stoppedReason="Essential container in task exited")
    )
    run = ecs.services.repos.runs.get_run(run_id)
    assert run is not None and run.status == RunStatus.SUCCESSFUL and run.ret == {"hi": "e", "attempt": 1}


def test_an_ecs_task_that_exited_0_without_the_adapter_fails_the_run(ecs: Stack) -> None:
    ecs.services.actions.register(ADMIN, P, ENV, ACTION)
    run_id, task = submit(ecs, who="e")
    started = watch(ecs, "RunTask")
    ecs.services.remote.handle_event(ecs_event(run_id, task, "RUNNING"))
    # the task's container ended well but never claimed the run (nothing ran the adapter)
    stopped = ecs_event(run_id, task, "STOPPED", 0, stoppedReason="Essential container in task exited")
    assert ecs.services.remote.handle_event(stopped)["status"] == "FAILED"
    run = ecs.services.repos.runs.get_run(run_id)
    assert run is not None and run.error is not None and run.error.kind == "platform"
    assert "ecs container exited 0 without running hatchway's adapter" in run.error.message
    assert started == []  # the same image would do the same again: no other task


def test_an_ecs_retry_starts_a_new_task_and_old_task_events_are_ignored(ecs: Stack) -> None:
    services = ecs.services
    services.actions.register(ADMIN, P, ENV, ACTION)
    run_id, first = submit(ecs, who="e", exit="3")
    assert container(ecs, run_id, "ecs/task-1") == RETRY_EXIT_CODE
    # When the first task's STOPPED event arrives, the next attempt gets a task of its own
    services.remote.handle_event(ecs_event(run_id, first, "STOPPED", RETRY_EXIT_CODE))
    retried = services.repos.runs.get_run(run_id)
    assert retried is not None and retried.status == RunStatus.ENQUEUED
    second = retried.external_id
    assert second and second != first
    # Then the old task's late events are about a task the run no longer has
    assert "ignored" in services.remote.handle_event(ecs_event(run_id, first, "STOPPED", RETRY_EXIT_CODE))
    assert "ignored" in services.remote.handle_event(ecs_event(run_id, first, "RUNNING"))
    assert container(ecs, run_id, "ecs/task-2") == 1
    services.remote.handle_event(ecs_event(run_id, second, "STOPPED", 1))
    final = services.repos.runs.get_run(run_id)
    assert final is not None and final.status == RunStatus.FAILED and final.attempt == 2
    assert final.error is not None and final.error.kind == "application"


def test_an_ecs_task_killed_mid_attempt_is_retried_then_fails(ecs: Stack) -> None:
    from hatchway.wiring import container_attempts

    services = ecs.services
    services.actions.register(ADMIN, P, ENV, ACTION)
    run_id, task = submit(ecs, who="e")
    oom = "OutOfMemoryError: Container killed due to memory usage"
    for attempt in (1, 2):
        services.remote.handle_event(ecs_event(run_id, task, "RUNNING"))
        # the container claimed the run and was then killed before recording anything
        assert container_attempts(services).claim(run_id, f"ecs/task-{attempt}") is not None
        services.remote.handle_event(ecs_event(run_id, task, "STOPPED", 137, stoppedReason=oom))
        after = services.repos.runs.get_run(run_id)
        assert after is not None and after.attempt == attempt
        if attempt == 1:
            assert after.status == RunStatus.ENQUEUED and after.external_id != task
            task = after.external_id  # type: ignore[assignment]
    final = services.repos.runs.get_run(run_id)
    assert final is not None and final.status == RunStatus.FAILED
    assert final.error is not None and final.error.kind == "application" and "137" in final.error.message


def test_cancel_stops_the_ecs_task(ecs: Stack) -> None:
    ecs.services.actions.register(ADMIN, P, ENV, ACTION)
    run_id, task = submit(ecs, who="e")
    ecs.services.remote.handle_event(ecs_event(run_id, task, "RUNNING"))
    assert ecs.services.runs.cancel(ADMIN, P, ENV, run_id).status == RunStatus.TERMINATING
    [described] = ecs.client("ecs").describe_tasks(cluster=ecs.settings.aws.ecs_cluster, tasks=[task])["tasks"]
    assert described["desiredStatus"] == "STOPPED"
    ecs.services.remote.handle_event(ecs_event(run_id, task, "STOPPED", 143, stoppedReason="cancelled"))
    assert status(ecs, run_id) == RunStatus.TERMINATED


def test_an_ecs_task_that_failed_to_start_is_retried_on_the_platforms_allowance(ecs: Stack) -> None:
    services = ecs.services
    services.actions.register(ADMIN, P, ENV, ACTION)
    run_id, task = submit(ecs, who="e", exit="1")
    submitted = services.repos.runs.get_run(run_id)
    assert submitted is not None
    pull = "CannotPullContainerError: pull image manifest has been retried 5 times"
    tasks = [task]
    # When its tasks fail to start, as many times as the lost-attempt allowance (3) grants
    for failed in range(1, 4):
        event = ecs_event(run_id, tasks[-1], "STOPPED", stopCode="TaskFailedToStart", stoppedReason=pull)
        assert services.remote.handle_event(event)["status"] == "ENQUEUED"
        retried = services.repos.runs.get_run(run_id)
        # Then each time another task is started, the failed start counted as a lost attempt
        assert retried is not None and retried.external_id not in tasks
        assert (retried.attempt, retried.lost_attempts) == (failed, failed)
        assert retried.max_attempts == submitted.max_attempts  # the action's own budget is untouched
        assert retried.status_reason is not None and "did not start (CannotPullContainerError" in retried.status_reason
        tasks.append(retried.external_id)  # type: ignore[arg-type]
    # and once a task starts, the action's own attempt runs (its exit 1 is never retried)
    assert container(ecs, run_id, "ecs/task-4") == 1
    services.remote.handle_event(ecs_event(run_id, tasks[-1], "STOPPED", 1))
    final = services.repos.runs.get_run(run_id)
    assert final is not None and final.status == RunStatus.FAILED and final.error is not None
    assert (final.attempt, final.lost_attempts) == (4, 3) and final.error.kind == "user"


def test_an_ecs_task_that_never_starts_fails_the_run_past_the_allowance(ecs: Stack) -> None:
    services = ecs.services
    services.actions.register(ADMIN, P, ENV, ACTION)
    run_id, task = submit(ecs, who="e")
    reason = "CannotPullContainerError: no such image"
    for _ in range(4):
        current = services.repos.runs.get_run(run_id)
        assert current is not None and current.external_id is not None
        event = ecs_event(run_id, current.external_id, "STOPPED", stopCode="TaskFailedToStart", stoppedReason=reason)
        services.remote.handle_event(event)
    final = services.repos.runs.get_run(run_id)
    assert final is not None and final.status == RunStatus.FAILED and final.error is not None
    assert final.error.kind == "platform" and "CannotPullContainerError" in final.error.message
    assert final.lost_attempts == 3


def test_a_task_role_is_handed_out_only_under_its_own_projects_and_environments_tags(batch: Stack) -> None:
    from hatchway.aws.clients import AwsClients
    from hatchway.aws.engines import ENVIRONMENT_TAG, PROJECT_TAG, TaskRoles, hashed_role_name, task_role_name
    from tests.awsmock import REGION

    # Given a role under the name a project's role would have, made for another project (IAM names
    # ignore case: hw-task-proj_A-dev is also hw-task-proj_a-dev's name; moto's do not, so it is made here)
    iam = batch.client("iam")
    prefix = batch.settings.aws.resource_prefix
    taken = task_role_name(prefix, "proj_Sales", "dev")
    tags = [{"Key": PROJECT_TAG, "Value": "proj_sales"}, {"Key": ENVIRONMENT_TAG, "Value": "dev"}]
    iam.create_role(RoleName=taken, Path=f"/{prefix}/", AssumeRolePolicyDocument="{}", Tags=tags)
    roles = TaskRoles(AwsClients(REGION, None, batch.session), prefix, batch.settings.aws.task_policy_arn, None)
    # When the project asks for its role in that environment
    arn = roles.arn_for("proj_Sales", "dev")
    # Then it gets one of its own, never the other project's
    own = hashed_role_name(prefix, "proj_Sales", "dev")
    assert arn is not None and arn.endswith("/" + own)
    made = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=own)["Tags"]}
    assert made == {PROJECT_TAG: "proj_Sales", ENVIRONMENT_TAG: "dev"}
    assert roles.arn_for("proj_Sales", "dev") == arn  # once per process
    # and each environment of a project has a role of its own (the key binds secrets to both)
    other = roles.arn_for("proj_Sales", "prod")
    assert other is not None and other != arn and other.endswith("/" + task_role_name(prefix, "proj_Sales", "prod"))
    assert (
        TaskRoles(AwsClients(REGION, None, batch.session), prefix, None, "arn:fixed").arn_for("p", "e") == "arn:fixed"
    )
