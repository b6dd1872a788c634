"""Remote runs whose state-change events never came, settled by the sweep on moto.

moto's Batch (without Docker) finishes a job as soon as it is submitted - SUCCEEDED, or FAILED
with ``MOTO_SIMPLE_BATCH_FAIL_AFTER=0`` - and never emits events, which is exactly the situation
the sweep exists for; a job still running is played by setting its status in moto's backend.
Time is moved by the ``now`` the sweep is given, never by sleeping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hatchway.aws.batch import BatchEngine
from hatchway.aws.ecs import EcsEngine
from hatchway.domain.runs import RunStatus, now_ms
from hatchway.wiring import container_attempts
from tests.awsmock import ACCOUNT, REGION
from tests.functional.awsstack import (
    ACTION,
    ADMIN,
    ENV,
    P,
    Stack,
    build_stack,
    container,
    ecs_event,
    submit,
    watch,
)

pytestmark = pytest.mark.aws

STALE = 900.0
LATER = 3600_000  # ms: every run made in a test is stale this much later


@pytest.fixture
def batch(tmp_path: Path, infrastructure: dict[str, Any]) -> Stack:
    stack = build_stack(tmp_path, infrastructure, BatchEngine)
    stack.services.actions.register(ADMIN, P, ENV, ACTION)
    return stack


@pytest.fixture
def ecs(tmp_path: Path, infrastructure: dict[str, Any]) -> Stack:
    stack = build_stack(tmp_path, infrastructure, EcsEngine)
    stack.services.actions.register(ADMIN, P, ENV, ACTION)
    return stack


def run_of(stack: Stack, run_id: str) -> Any:
    run = stack.services.repos.runs.get_run(run_id)
    assert run is not None
    return run


def moto_job(job_id: str) -> Any:
    from moto.batch.models import batch_backends

    return batch_backends[ACCOUNT][REGION]._jobs[job_id]


def test_a_batch_run_whose_events_were_lost_is_settled_from_describe_jobs(batch: Stack) -> None:
    # Given a run whose job ended while its events were lost (its container never recorded anything)
    run_id, job = submit(batch, who="w")
    described = watch(batch, "DescribeJobs")
    # When the sweep runs before the run is stale, it asks nothing and changes nothing
    assert batch.services.remote.sweep_remote(STALE).checked == 0
    assert described == [] and run_of(batch, run_id).status == RunStatus.ENQUEUED
    # Then, once stale, the job's real state is applied as its event would have been
    result = batch.services.remote.sweep_remote(STALE, now_ms() + LATER)
    assert (result.checked, result.settled) == (1, [run_id])
    assert described == [{"jobs": [job]}]
    # (moto's job SUCCEEDED without a container: nothing ran the adapter, so the run fails)
    settled = run_of(batch, run_id)
    assert settled.status == RunStatus.FAILED and settled.error.kind == "platform"
    assert "without running hatchway's adapter" in settled.error.message
    # and a second pass finds nothing left to do
    assert batch.services.remote.sweep_remote(STALE, now_ms() + LATER).checked == 0


def test_a_failed_job_fails_its_run_with_the_engines_reason(batch: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTO_SIMPLE_BATCH_FAIL_AFTER", "0")
    run_id, job = submit(batch, who="w")
    batch.services.remote.handle_event({"source": "aws.batch", "detail-type": "Batch Job State Change",
                                 "detail": {"jobName": run_id, "jobId": job, "status": "RUNNING"}})  # fmt: skip
    assert run_of(batch, run_id).status == RunStatus.INPROGRESS
    assert batch.services.remote.sweep_remote(STALE, now_ms() + LATER).settled == [run_id]
    failed = run_of(batch, run_id)
    assert failed.status == RunStatus.FAILED and failed.error.kind == "platform" and failed.error.exception_id


def test_a_job_still_running_is_left_alone_and_a_lost_running_event_is_applied(batch: Stack) -> None:
    run_id, job = submit(batch, who="w")
    moto_job(job).status = "RUNNING"
    result = batch.services.remote.sweep_remote(STALE, now_ms() + LATER)
    # the RUNNING event that never came is applied; the run stays unfinished
    assert result.settled == [run_id] and run_of(batch, run_id).status == RunStatus.INPROGRESS
    assert batch.services.remote.sweep_remote(STALE, now_ms() + LATER).settled == []
    moto_job(job).status = "RUNNABLE"  # still queued (e.g. after a retry): nothing to apply
    assert batch.services.remote.sweep_remote(STALE, now_ms() + LATER).settled == []
    assert run_of(batch, run_id).status == RunStatus.INPROGRESS


def test_a_run_its_container_recorded_is_not_looked_up(batch: Stack) -> None:
    run_id, job = submit(batch, who="w")
    assert container(batch, run_id, f"batch/{job}/1") == 0
    described = watch(batch, "DescribeJobs")
    assert batch.services.remote.sweep_remote(STALE, now_ms() + LATER).checked == 0 and described == []
    assert run_of(batch, run_id).ret == {"hi": "w", "attempt": 1}


def test_a_job_batch_forgot_fails_its_run(batch: Stack) -> None:
    from moto.batch.models import batch_backends

    run_id, job = submit(batch, who="w")
    del batch_backends[ACCOUNT][REGION]._jobs[job]
    assert batch.services.remote.sweep_remote(STALE, now_ms() + LATER).settled == [run_id]
    failed = run_of(batch, run_id)
    assert failed.status == RunStatus.FAILED and "no longer knows the job" in failed.error.message


def test_a_cancelled_run_whose_job_ended_is_terminated(batch: Stack) -> None:
    run_id, job = submit(batch, who="w")
    moto_job(job).status = "RUNNING"
    batch.services.remote.sweep_remote(STALE, now_ms() + LATER)
    # the cancel asked Batch to terminate the job; its FAILED event is lost
    assert batch.services.runs.cancel(ADMIN, P, ENV, run_id).status == RunStatus.TERMINATING
    moto_job(job).status = "FAILED"
    assert batch.services.remote.sweep_remote(STALE, now_ms() + LATER).settled == [run_id]
    assert run_of(batch, run_id).status == RunStatus.TERMINATED


def test_many_runs_are_looked_up_in_few_calls(batch: Stack) -> None:
    ids = [submit(batch, who=str(index))[0] for index in range(5)]
    described = watch(batch, "DescribeJobs")
    assert sorted(batch.services.remote.sweep_remote(STALE, now_ms() + LATER).settled) == sorted(ids)
    assert len(described) == 1 and len(described[0]["jobs"]) == 5


def test_runs_behind_a_page_of_long_running_jobs_are_looked_up_too(batch: Stack) -> None:
    # Given more long-running jobs than one page holds, and a newer run whose events were lost
    running = [submit(batch, who=str(index)) for index in range(3)]
    for _, job in running:
        moto_job(job).status = "RUNNING"
    batch.services.remote.sweep_remote(STALE, now_ms() + LATER)  # their RUNNING events, applied
    lost, _ = submit(batch, who="late")
    described = watch(batch, "DescribeJobs")
    # When the sweep reads two runs a page
    result = batch.services.remote.sweep_remote(STALE, now_ms() + LATER, limit=2)
    # Then it reached the newer run behind them, page after page
    assert result.checked == 4 and result.settled == [lost] and len(described) == 2
    assert run_of(batch, lost).status == RunStatus.FAILED  # moto's job SUCCEEDED without the adapter
    assert {run_of(batch, run_id).status for run_id, _ in running} == {RunStatus.INPROGRESS}
    # and a bound on pages keeps one pass short
    assert batch.services.remote.sweep_remote(STALE, now_ms() + LATER, limit=1, pages=2).checked == 2


def moto_tasks() -> dict[str, Any]:
    from moto.ecs.models import ecs_backends

    return {arn: task for tasks in ecs_backends[ACCOUNT][REGION].tasks.values() for arn, task in tasks.items()}


def test_a_stopped_ecs_task_whose_event_was_lost_settles_its_run(ecs: Stack) -> None:
    # Given a task whose container claimed the run and was killed, and whose STOPPED event was lost
    run_id, task = submit(ecs, who="e")
    assert container_attempts(ecs.services).claim(run_id, "ecs/task-1") is not None
    ecs.client("ecs").stop_task(cluster=ecs.settings.aws.ecs_cluster, task=task, reason="Spot interruption")
    moto_tasks()[task].containers[0].exitCode = 137  # moto reports 0 for every container
    started = watch(ecs, "RunTask")
    # When the sweep looks it up, the attempt counts as ended: with an attempt left, a new task starts
    assert ecs.services.remote.sweep_remote(STALE, now_ms() + LATER).settled == [run_id]
    retried = run_of(ecs, run_id)
    assert retried.status == RunStatus.ENQUEUED and retried.external_id != task and len(started) == 1
    # Then a task ECS no longer knows (it forgets stopped tasks after about an hour) ends the run
    assert container_attempts(ecs.services).claim(run_id, "ecs/task-2") is not None
    ecs.services.remote.handle_event(ecs_event(run_id, retried.external_id, "RUNNING"))
    from moto.ecs.models import ecs_backends

    for tasks in ecs_backends[ACCOUNT][REGION].tasks.values():
        tasks.pop(retried.external_id, None)
    assert ecs.services.remote.sweep_remote(STALE, now_ms() + LATER).settled == [run_id]
    final = run_of(ecs, run_id)
    assert final.status == RunStatus.FAILED and final.attempt == 2
    assert "no longer knows the task" in final.error.message


def test_the_scheduled_sweep_reports_remote_runs_it_settled(batch: Stack) -> None:
    run_id, _ = submit(batch, who="w")
    report = batch.services.sweeper.sweep(now_ms() + LATER)
    assert report.remote_checked == 1 and report.remote_settled == [run_id] and report.failures == 0
    assert run_of(batch, run_id).status == RunStatus.FAILED  # moto's job SUCCEEDED without the adapter
