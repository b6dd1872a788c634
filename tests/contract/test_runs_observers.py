"""The run repository's statistics behind metrics and the dashboard, and its observers, for every
backend of the contract's ``repos`` fixture. The rules base's default implementations are checked
against each backend's own (SQLite: one indexed query; DynamoDB: a projected Query of the tenant's
runs, and the run partitions of its second index).
"""

from __future__ import annotations

from dataclasses import replace

from hatchway.domain.runs import Mode, Run, RunStatus, new_run_id, now_ms
from hatchway.store.runs import BaseRunRepo


def add_run(
    runs: BaseRunRepo, created: int, project: str = "proj_a", env: str = "development", **changes: object
) -> Run:
    run = Run(
        id=new_run_id(created), project_id=project, environment=env, action_name="echo", action_version=1,
        action_digest="sha256:" + "0" * 64, invoked="run", mode=Mode.ASYNC, status=RunStatus.ENQUEUED,
        created_at=created, available_at=created,
    )  # fmt: skip
    return runs.create_run(replace(run, **changes))  # type: ignore[arg-type]


def test_run_summaries_cover_the_window_newest_first_and_say_when_cut(runs: BaseRunRepo) -> None:
    now = now_ms()
    old = add_run(runs, now - 7200_000)
    recent = [add_run(runs, now - s * 1000) for s in (300, 200, 100)]
    add_run(runs, now - 100_000, project="proj_b")
    add_run(runs, now - 100_000, env="production")
    summaries, truncated = runs.run_summaries("proj_a", "development", now - 3600_000)
    assert [s.created_at for s in summaries] == [r.created_at for r in reversed(recent)]
    assert not truncated
    assert old.created_at not in [s.created_at for s in summaries]
    cut, truncated = runs.run_summaries("proj_a", "development", now - 3600_000, limit=2)
    assert len(cut) == 2 and truncated
    # the base class's default (paging through whole runs) agrees with the backend's query
    assert BaseRunRepo._run_summaries(runs, "proj_a", "development", now - 3600_000, 10) == summaries


def test_active_counts_per_tenant_mode_and_status(runs: BaseRunRepo) -> None:
    now = now_ms()
    add_run(runs, now)
    add_run(runs, now)
    running = add_run(runs, now)
    runs.claim("worker-1", 30)
    add_run(runs, now, project="proj_b")
    done = add_run(runs, now, project="proj_b", status=RunStatus.INPROGRESS, lease_owner="x", lease_until=now + 30_000)
    runs.transition(done.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, finished_at=now)
    mine = {(c.status, c.mode): c.count for c in runs.active_counts("proj_a")}
    assert mine == {("ENQUEUED", "async"): 2, ("INPROGRESS", "async"): 1}
    everyone = {(c.project_id, c.status): c.count for c in runs.active_counts()}
    assert everyone == {("proj_a", "ENQUEUED"): 2, ("proj_a", "INPROGRESS"): 1, ("proj_b", "ENQUEUED"): 1}
    assert BaseRunRepo._active_counts(runs, None, 1000) == runs.active_counts()
    assert running.id  # (one of the three was claimed; which one does not matter)


def test_observers_see_every_creation_and_status_change_once(runs: BaseRunRepo) -> None:
    seen: list[tuple[str, str | None]] = []
    runs.observe(lambda run, src: seen.append((run.status.value, src.value if src else None)))
    runs.observe(lambda run, src: 1 / 0)  # a failing observer is logged and skipped
    run = add_run(runs, now_ms())
    claimed = runs.claim("worker-1", 30)
    assert claimed is not None and claimed.id == run.id
    runs.transition(run.id, RunStatus.INPROGRESS, RunStatus.SUCCESSFUL, finished_at=now_ms())
    assert seen == [("ENQUEUED", None), ("INPROGRESS", "ENQUEUED"), ("SUCCESSFUL", "INPROGRESS")]


def test_active_counts_include_runs_a_remote_engine_holds(runs: BaseRunRepo) -> None:
    # Given a run handed to Batch (queued there) and one whose container claimed it (no lease:
    # the engine watches the container), beside a finished remote run
    now = now_ms()
    add_run(runs, now, external_id="job-queued")
    add_run(runs, now, status=RunStatus.INPROGRESS, external_id="job-running", lease_owner="batch/job-running/1")
    add_run(runs, now, status=RunStatus.FAILED, external_id="job-done", finished_at=now)
    # Then both unfinished ones are counted
    counts = {(c.status, c.mode): c.count for c in runs.active_counts("proj_a")}
    assert counts == {("ENQUEUED", "async"): 1, ("INPROGRESS", "async"): 1}
