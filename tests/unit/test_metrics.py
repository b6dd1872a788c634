"""Run metrics: classification of store events, the Prometheus text format, CloudWatch EMF lines."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hatchway.domain.runs import ActiveCount, Mode, Run, RunStatus, now_ms
from hatchway.observability.metrics import EmfRecorder, PrometheusRecorder, exposition, render


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
