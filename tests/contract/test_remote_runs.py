"""The store's list of runs remote engines hold, which the remote sweeper reconciles with Batch and ECS."""

from __future__ import annotations

import itertools
from dataclasses import replace

from hatchway.domain.runs import Mode, Run, RunStatus, now_ms, run_id_floor
from hatchway.store.flat import SingleStore

_serial = itertools.count()


def remote_run(store: SingleStore, created: int, **changes: object) -> Run:
    # an id of that time whatever ids this process made before (new_run_id never goes back in time)
    run = Run(
        id=f"{run_id_floor(created)}{next(_serial):016d}", project_id="proj_a", environment="development",
        action_name="etl", action_version=1, action_digest="sha256:" + "0" * 64, mode=Mode.ASYNC,
        status=RunStatus.ENQUEUED, created_at=created, available_at=created, external_id=f"job-{created}",
    )  # fmt: skip
    return store.create_run(replace(run, **changes))  # type: ignore[arg-type]


def test_remote_runs_are_the_old_unfinished_ones_with_an_engine_oldest_first(store: SingleStore) -> None:
    now = now_ms()
    queued = remote_run(store, now - 3_600_000)
    running = remote_run(store, now - 1_800_000, status=RunStatus.INPROGRESS, lease_owner="ecs/task-1")
    stopping = remote_run(store, now - 1_700_000, status=RunStatus.TERMINATING, lease_owner="ecs/task-2")
    remote_run(store, now - 1_600_000, status=RunStatus.SUCCESSFUL, finished_at=now)  # ended
    remote_run(store, now - 1_500_000, external_id=None)  # in the gateway's own queue
    remote_run(store, now - 1_400_000, external_id=None, status=RunStatus.INPROGRESS, lease_owner="w",
               lease_until=now + 30_000)  # fmt: skip
    remote_run(store, now - 60_000)  # too recent: its events may still be on their way
    found = store.remote_runs(now - 600_000)
    assert [run.id for run in found] == [queued.id, running.id, stopping.id]
    assert found[1].external_id == running.external_id and found[1].status == RunStatus.INPROGRESS
    assert [run.id for run in store.remote_runs(now - 600_000, limit=1)] == [queued.id]
    # once a run ends it is no longer listed
    store.transition(running.id, RunStatus.INPROGRESS, RunStatus.FAILED, finished_at=now)
    assert [run.id for run in store.remote_runs(now - 600_000)] == [queued.id, stopping.id]


def test_remote_runs_page_after_the_last_id_of_the_previous_page(store: SingleStore) -> None:
    # the sweeper reads every stale remote run in pages, however many run for a long time
    now = now_ms()
    made = [remote_run(store, now - 3_600_000 + index * 1000) for index in range(5)]
    first = store.remote_runs(now - 600_000, limit=2)
    second = store.remote_runs(now - 600_000, limit=2, after=first[-1].id)
    third = store.remote_runs(now - 600_000, limit=2, after=second[-1].id)
    assert [run.id for run in first + second + third] == [run.id for run in made]
    assert store.remote_runs(now - 600_000, limit=2, after=made[-1].id) == []
    # a cursor past the bound finds nothing (and is no error)
    assert store.remote_runs(now - 3_600_000, after=made[-1].id) == []
