"""The dashboard's numbers, aggregated from the store's run summaries.

Runs are bucketed by when they were created and counted by their current status, so the last
hour's chart shows what became of the runs started in each minute. Durations are those of the
runs' last attempts; percentiles use the nearest-rank method over every finished run in the window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypedDict

from hatchway.domain.runs import ActiveCount, RunStatus, RunSummary, iso


@dataclass(frozen=True)
class Window:
    name: str
    seconds: int
    bucket_seconds: int


WINDOWS: dict[str, Window] = {
    "hour": Window("hour", 3600, 60),
    "day": Window("day", 86400, 1800),
}
STATUSES = [status.value for status in RunStatus]


class Bucket(TypedDict):
    start: str | None
    counts: dict[str, int]


class Durations(TypedDict):
    action: str
    invoked: str
    count: int
    failed: int
    p50_ms: int | None
    p95_ms: int | None
    max_ms: int


class ErrorRate(TypedDict):
    """One action's failed runs among those that ended on their own (SUCCESSFUL or FAILED; a
    TERMINATED run was stopped by someone, which is no error of the action's)."""

    action: str
    invoked: str
    finished: int
    failed: int
    error_rate: float


class Workers(TypedDict):
    size: int
    busy: int


class Dashboard(TypedDict):
    """The dashboard's numbers for one project and environment (``GET .../stats``)."""

    window: str
    since: str | None
    until: str | None
    bucket_seconds: int
    statuses: list[str]
    buckets: list[Bucket]
    totals: dict[str, int]
    durations: list[Durations]
    error_rates: list[ErrorRate]
    queue: dict[str, int]
    workers: Workers | None
    truncated: bool


def percentile(sorted_values: list[int], fraction: float) -> int | None:
    """Nearest-rank percentile of already sorted values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def dashboard(
    summaries: Iterable[RunSummary],
    active: Iterable[ActiveCount],
    window: Window,
    now_ms: int,
    *,
    environment: str,
    workers: tuple[int, int] | None = None,
    truncated: bool = False,
) -> Dashboard:
    """The body of ``GET /v1/projects/{project_id}/stats``."""
    bucket_ms = window.bucket_seconds * 1000
    end = (now_ms // bucket_ms + 1) * bucket_ms  # the bucket holding "now" is the last one
    start = end - window.seconds * 1000
    counts: list[dict[str, int]] = [{} for _ in range(window.seconds // window.bucket_seconds)]
    totals = dict.fromkeys(STATUSES, 0)
    durations: dict[tuple[str, str], list[int]] = {}
    failures: dict[tuple[str, str], int] = {}
    finished: dict[tuple[str, str], int] = {}
    for run in summaries:
        if run.created_at < start:
            continue
        index = min(len(counts) - 1, (run.created_at - start) // bucket_ms)
        counts[index][run.status] = counts[index].get(run.status, 0) + 1
        totals[run.status] = totals.get(run.status, 0) + 1
        key = (run.action_name, run.invoked)
        if run.status == RunStatus.FAILED:
            failures[key] = failures.get(key, 0) + 1
        if run.status in (RunStatus.SUCCESSFUL, RunStatus.FAILED):
            finished[key] = finished.get(key, 0) + 1
        if run.duration_ms is not None and run.status in (RunStatus.SUCCESSFUL, RunStatus.FAILED):
            durations.setdefault(key, []).append(int(run.duration_ms))
    per_action: list[Durations] = []
    for (action, invoked), values in sorted(durations.items()):
        values.sort()
        per_action.append(
            {
                "action": action,
                "invoked": invoked,
                "count": len(values),
                "failed": failures.get((action, invoked), 0),
                "p50_ms": percentile(values, 0.50),
                "p95_ms": percentile(values, 0.95),
                "max_ms": values[-1],
            }
        )
    # every finished run counts here, also a failure without a duration (one that never started)
    error_rates: list[ErrorRate] = [
        {
            "action": action,
            "invoked": invoked,
            "finished": count,
            "failed": failures.get((action, invoked), 0),
            "error_rate": round(failures.get((action, invoked), 0) / count, 4),
        }
        for (action, invoked), count in sorted(finished.items())
    ]
    queue = {"enqueued": 0, "in_progress": 0, "terminating": 0}
    field = {"ENQUEUED": "enqueued", "INPROGRESS": "in_progress", "TERMINATING": "terminating"}
    for item in active:
        if item.environment == environment and item.status in field:
            queue[field[item.status]] += item.count
    return {
        "window": window.name,
        "since": iso(start),
        "until": iso(end),
        "bucket_seconds": window.bucket_seconds,
        "statuses": STATUSES,
        "buckets": [{"start": iso(start + i * bucket_ms), "counts": c} for i, c in enumerate(counts)],
        "totals": totals,
        "durations": per_action,
        "error_rates": error_rates,
        "queue": queue,
        "workers": None if workers is None else {"size": workers[0], "busy": workers[1]},
        "truncated": truncated,
    }
