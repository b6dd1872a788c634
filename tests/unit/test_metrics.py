"""Run metrics: classification of store events, the Prometheus text format, CloudWatch EMF lines."""

from __future__ import annotations

import json
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hatchway.domain.runs import ActiveCount, Mode, Run, RunStatus, now_ms
from hatchway.observability.metrics import (
    EmfRecorder,
    GroupRecorder,
    PrometheusRecorder,
    exposition,
    group_directory,
    remove_group_directory,
    render,
)
from tests.helpers import wait_until


def make_run(**changes: object) -> Run:
    now = now_ms()
    run = Run(
        id="run_01TEST", project_id="proj_a", environment="development", action_name="echo", action_version=1,
        action_digest="sha256:" + "0" * 64, invoked="run", mode=Mode.ASYNC, status=RunStatus.ENQUEUED,
        created_at=now, available_at=now,
    )  # fmt: skip
    return replace(run, **changes)  # type: ignore[arg-type]


def lifecycle(recorder: PrometheusRecorder | EmfRecorder, run: Run) -> None:
    """created -> claimed after 2 s in the queue -> SUCCESSFUL after 1.5 s."""
    recorder.observe(run, None)
    claimed = replace(run, status=RunStatus.INPROGRESS, available_at=run.available_at - 2000)
    recorder.observe(claimed, RunStatus.ENQUEUED)
    recorder.observe(replace(claimed, status=RunStatus.SUCCESSFUL, duration_ms=1500), RunStatus.INPROGRESS)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, parsed by the reference parser (which also proves the format is valid)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    tenant = {"project": "proj_a", "environment": "development", "action": "echo"}
    return name, tuple(sorted({**tenant, **labels}.items()))


def test_a_run_lifecycle_becomes_counters_and_histograms() -> None:
    recorder = PrometheusRecorder()
    lifecycle(recorder, make_run())
    got = samples(render(recorder.families()))
    assert got[key("hatchway_runs_started_total", mode="async")] == 1
    assert got[key("hatchway_runs_finished_total", mode="async", status="SUCCESSFUL")] == 1
    assert got[key("hatchway_run_duration_seconds_sum", mode="async")] == 1.5
    assert got[key("hatchway_run_duration_seconds_bucket", mode="async", le="1.0")] == 0
    assert got[key("hatchway_run_duration_seconds_bucket", mode="async", le="2.5")] == 1
    assert got[key("hatchway_run_duration_seconds_bucket", mode="async", le="+Inf")] == 1
    wait = got[key("hatchway_queue_wait_seconds_sum")]
    assert 2.0 <= wait < 5.0
    # async runs have no sync latency
    assert not [k for k in got if k[0].startswith("hatchway_sync_latency")]


def test_sync_calls_record_the_latency_the_caller_saw() -> None:
    recorder = PrometheusRecorder()
    run = make_run(mode=Mode.SYNC, invoked="check", status=RunStatus.INPROGRESS)
    recorder.observe(run, None)
    done = replace(run, status=RunStatus.FAILED, duration_ms=40, finished_at=run.created_at + 70)
    recorder.observe(done, RunStatus.INPROGRESS)
    got = samples(render(recorder.families()))
    assert got[key("hatchway_sync_latency_seconds_sum", sync_action="check")] == pytest.approx(0.07)
    assert got[key("hatchway_sync_latency_seconds_count", sync_action="check")] == 1


def test_a_project_sees_only_its_own_series_and_label_values_are_escaped() -> None:
    recorder = PrometheusRecorder()
    lifecycle(recorder, make_run())
    lifecycle(recorder, make_run(project_id="proj_b", action_name='we"ird\\name\n'))
    mine = render(recorder.families("proj_a"))
    assert "proj_b" not in mine and "proj_a" in mine
    got = samples(render(recorder.families()))
    assert any(dict(labels).get("action") == 'we"ird\\name\n' for _, labels in got)


def test_exposition_adds_store_gauges_and_workers() -> None:
    active = [
        ActiveCount("proj_a", "development", "async", "ENQUEUED", 3),
        ActiveCount("proj_a", "development", "sync", "INPROGRESS", 1),
    ]
    got = samples(exposition(PrometheusRecorder(), active, (4, 2)))
    assert got[("hatchway_queue_depth", (("environment", "development"), ("project", "proj_a")))] == 3
    key = (("environment", "development"), ("mode", "sync"), ("project", "proj_a"), ("status", "INPROGRESS"))
    assert got[("hatchway_runs_active", key)] == 1
    assert got[("hatchway_workers", ())] == 4
    assert got[("hatchway_workers_busy", ())] == 2
    assert "hatchway_workers" not in exposition(PrometheusRecorder(), active, None, "proj_a")


def test_emf_lines_carry_the_metrics_and_dimensions(capsys: pytest.CaptureFixture[str]) -> None:
    lifecycle(EmfRecorder(), make_run())
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    names = {m["Name"]: line for line in lines for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert set(names) == {"RunsStarted", "QueueWait", "RunsSucceeded", "RunDuration"}
    assert names["RunDuration"]["RunDuration"] in (1500, [1500])
    assert names["RunsSucceeded"]["project"] == "proj_a" and names["RunsSucceeded"]["action"] == "echo"
    assert all(line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "hatchway" for line in lines)


# ---- a serve group's page: each process's file, merged by whichever process answers


def group_of(tmp_path: Path, count: int, workers: tuple[int, int] | None = (1, 0)) -> list[GroupRecorder]:
    """``count`` recorders of one group, as its processes have them (no timer: saved by hand)."""
    return [GroupRecorder(tmp_path, index, lambda: workers, interval=None) for index in range(count)]


def test_any_process_of_a_group_answers_the_sum_of_them_all(tmp_path: Path) -> None:
    # Given a group of two, each of which saw runs of its own
    first, second = group_of(tmp_path, 2)
    lifecycle(first, make_run())
    lifecycle(second, make_run())
    lifecycle(second, make_run(project_id="proj_b"))
    second.save()  # its timer's write
    # When the first answers a scrape
    got = samples(first.exposition([ActiveCount("proj_a", "development", "async", "ENQUEUED", 3)], (1, 0)))
    # Then counters and histograms are summed, the store's gauges are read once, the pools added up
    assert got[key("hatchway_runs_started_total", mode="async")] == 2
    assert got[key("hatchway_runs_finished_total", mode="async", status="SUCCESSFUL")] == 2
    assert got[key("hatchway_run_duration_seconds_count", mode="async")] == 2
    assert got[key("hatchway_run_duration_seconds_bucket", mode="async", le="2.5")] == 2
    assert got[key("hatchway_run_duration_seconds_sum", mode="async")] == 3.0
    assert got[key("hatchway_runs_started_total", mode="async", project="proj_b")] == 1
    assert got[("hatchway_queue_depth", (("environment", "development"), ("project", "proj_a")))] == 3
    assert got[("hatchway_workers", ())] == 2
    # and a project's admin sees the sum of its own series only, and no pool
    mine = first.exposition([], None, "proj_a")
    assert "proj_b" not in mine and "hatchway_workers" not in mine
    assert samples(mine)[key("hatchway_runs_started_total", mode="async")] == 2


def test_a_process_that_replaces_a_dead_one_starts_from_its_numbers(tmp_path: Path) -> None:
    first, second = group_of(tmp_path, 2)
    for _ in range(3):
        lifecycle(second, make_run())
    assert samples(second.exposition([], (1, 0)))[key("hatchway_runs_started_total", mode="async")] == 3
    # the second dies (its file stays); the first still counts it, but not its workers (pid gone)
    dead = json.loads(second.path.read_text())
    second.path.write_text(json.dumps({**dead, "pid": _dead_pid()}))
    got = samples(first.exposition([], (1, 0)))
    assert got[key("hatchway_runs_started_total", mode="async")] == 3
    assert got[("hatchway_workers", ())] == 1
    # its replacement, on the same index, carries on from there
    replacement = GroupRecorder(tmp_path, 1, lambda: (1, 0), interval=None)
    lifecycle(replacement, make_run())
    got = samples(replacement.exposition([], (1, 0)))
    assert got[key("hatchway_runs_started_total", mode="async")] == 4
    assert got[key("hatchway_queue_wait_seconds_count")] == 4
    assert got[("hatchway_workers", ())] == 2


def _dead_pid() -> int:
    child = subprocess.Popen(["/bin/true"])  # noqa: S603 - a fixed command
    child.wait()
    return child.pid


def test_group_files_are_private_whole_and_written_only_when_changed(tmp_path: Path) -> None:
    directory = group_directory(tmp_path)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(directory.parent.stat().st_mode) == 0o700
    (recorder,) = group_of(directory, 1)
    lifecycle(recorder, make_run())
    recorder.save()
    assert stat.S_IMODE(recorder.path.stat().st_mode) == 0o600
    assert sorted(p.name for p in directory.iterdir()) == ["0.json"]  # no temporary file left
    written = recorder.path.stat().st_ino  # a write renames a new file into place
    recorder.save()  # nothing changed: not written again
    assert recorder.path.stat().st_ino == written
    lifecycle(recorder, make_run())
    recorder.close()  # the last numbers, at shutdown
    assert json.loads(recorder.path.read_text())["counters"]["hatchway_runs_started_total"][0][1] == 2


def test_the_timer_shares_a_process_s_numbers(tmp_path: Path) -> None:
    recorder = GroupRecorder(tmp_path, 0, lambda: (2, 1), interval=0.01)
    try:
        lifecycle(recorder, make_run())
        other = GroupRecorder(tmp_path, 1, lambda: None, interval=None)

        def counted() -> bool:
            got = samples(other.exposition([], None))
            return got.get(key("hatchway_runs_started_total", mode="async")) == 1

        wait_until(counted, 10, 0.01, "the first process's file")
        assert samples(other.exposition([], None))[("hatchway_workers_busy", ())] == 1
    finally:
        recorder.close()


def test_an_unreadable_file_is_left_out_and_a_new_group_starts_from_nothing(tmp_path: Path) -> None:
    old = group_directory(tmp_path)
    (old / "0.json").write_text("{}")
    stale = tmp_path / "metrics" / "group-999999999"  # a pid that cannot be alive
    stale.mkdir()
    directory = group_directory(tmp_path)
    assert directory == old  # the same leader: cleared, made again
    assert list(directory.iterdir()) == []
    assert not stale.exists()
    first, _ = group_of(directory, 2)
    (directory / "1.json").write_text('{"pid": 1, "counters": [')
    lifecycle(first, make_run())
    assert samples(first.exposition([], (1, 0)))[key("hatchway_runs_started_total", mode="async")] == 1
    remove_group_directory(directory)
    assert not directory.exists()
