"""The dashboard's aggregates: buckets by creation time, nearest-rank percentiles, the queue."""

from __future__ import annotations

from hatchway.domain.runs import ActiveCount, RunSummary
from hatchway.domain.stats import WINDOWS, dashboard, percentile

NOW = 1_700_000_030_000  # 30 s into a minute


def summary(
    action: str, status: str, created_ago_s: float, duration_ms: int | None, invoked: str = "run"
) -> RunSummary:
    created = int(NOW - created_ago_s * 1000)
    return RunSummary(action, invoked, "async", status, created, created, created + (duration_ms or 0), duration_ms)


def test_percentiles_use_the_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.95) == 95
    assert percentile([7], 0.95) == 7
    assert percentile([], 0.5) is None


def test_runs_are_counted_per_minute_by_status_and_durations_per_action() -> None:
    runs = [
        summary("a", "SUCCESSFUL", 5, 100),
        summary("a", "SUCCESSFUL", 10, 300),
        summary("a", "FAILED", 65, 200),
        summary("b", "INPROGRESS", 1, None),
        summary("b", "SUCCESSFUL", 4000, 50),  # older than the hour: not counted
        summary("a", "SUCCESSFUL", 20, 30, invoked="check"),
    ]
    active = [
        ActiveCount("p", "development", "async", "ENQUEUED", 4),
        ActiveCount("p", "production", "async", "ENQUEUED", 9),
        ActiveCount("p", "development", "async", "INPROGRESS", 1),
    ]
    body = dashboard(runs, active, WINDOWS["hour"], NOW, environment="development", workers=(2, 1))
    assert len(body["buckets"]) == 60
    assert body["buckets"][-1]["counts"] == {"SUCCESSFUL": 3, "INPROGRESS": 1}
    assert body["buckets"][-2]["counts"] == {"FAILED": 1}
    assert body["totals"]["SUCCESSFUL"] == 3 and body["totals"]["FAILED"] == 1
    a_run = next(d for d in body["durations"] if d["action"] == "a" and d["invoked"] == "run")
    assert (a_run["count"], a_run["failed"], a_run["p50_ms"], a_run["p95_ms"], a_run["max_ms"]) == (3, 1, 200, 300, 300)
    assert [d["invoked"] for d in body["durations"]] == ["check", "run"]
    assert body["queue"] == {"enqueued": 4, "in_progress": 1, "terminating": 0}
    assert body["workers"] == {"size": 2, "busy": 1}


def test_a_day_has_half_hour_buckets() -> None:
    body = dashboard([summary("a", "SUCCESSFUL", 23 * 3600, 10)], [], WINDOWS["day"], NOW, environment="development")
    assert len(body["buckets"]) == 48 and body["bucket_seconds"] == 1800
    assert sum(sum(b["counts"].values()) for b in body["buckets"]) == 1
    assert body["workers"] is None


def test_error_rates_count_every_run_that_ended_on_its_own() -> None:
    runs = [
        summary("a", "SUCCESSFUL", 5, 100),
        summary("a", "FAILED", 6, 100),
        summary("a", "FAILED", 7, None),  # failed before it started: no duration, still a failure
        summary("a", "TERMINATED", 8, 50),  # stopped by someone: not the action's error
        summary("a", "INPROGRESS", 1, None),  # not finished
        summary("b", "FAILED", 9, None),  # only failures without a duration: no durations entry
        summary("c", "SUCCESSFUL", 4000, 10),  # older than the hour
    ]
    body = dashboard(runs, [], WINDOWS["hour"], NOW, environment="development")
    assert body["error_rates"] == [
        {"action": "a", "invoked": "run", "finished": 3, "failed": 2, "error_rate": 0.6667},
        {"action": "b", "invoked": "run", "finished": 1, "failed": 1, "error_rate": 1.0},
    ]
    assert [d["action"] for d in body["durations"]] == ["a"]  # the durations stay those with a duration
