"""Run metrics: counters and histograms fed by the store's run observer.

:meth:`MetricsRecorder.observe` is registered with :meth:`BaseRunRepo.observe`, so a run is counted
where its status really changes - by the API, a worker, the lease sweeper or an AWS state-change
event - exactly once per change. What is recorded:

* runs started (created) and finished (reaching SUCCESSFUL, FAILED or TERMINATED);
* the duration of a finished run's last attempt; for sync calls also the latency the caller saw
  (from acceptance to answer);
* queue wait: from the moment a run became claimable to the moment a worker claimed it.

:class:`PrometheusRecorder` keeps them in this process for ``GET /metrics`` (the numbers of the
runs this process saw move; scrape every gateway and worker process, as with any exporter).
:class:`EmfRecorder` writes CloudWatch embedded-metric lines through powertools on AWS.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hatchway.domain.runs import ActiveCount, Mode, Run, RunStatus

if TYPE_CHECKING:
    from hatchway.config import Settings

log = logging.getLogger("hatchway.metrics")

#: histogram bounds in seconds: sync calls live in the first half, long runs in the second
BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
)  # fmt: skip

Labels = tuple[tuple[str, str], ...]


class MetricsRecorder:
    """Turns run events into metrics; this base records nothing."""

    name = "off"

    def observe(self, run: Run, previous: RunStatus | None) -> None:
        """A store observer: classify the event and record it."""
        if previous is None:
            self.started(run)
        elif previous == RunStatus.ENQUEUED and run.status == RunStatus.INPROGRESS:
            self.claimed(run, max(0, int(time.time() * 1000) - run.available_at) / 1000)
        if run.status.is_terminal:  # also a run recorded only at its end (a sync call on DynamoDB)
            latency = None
            if run.mode == Mode.SYNC and run.finished_at is not None:
                latency = max(0, run.finished_at - run.created_at) / 1000
            self.finished(run, None if run.duration_ms is None else run.duration_ms / 1000, latency)

    def exposition(
        self, active: Iterable[ActiveCount], workers: tuple[int, int] | None, project_id: str | None = None
    ) -> str:
        """The ``GET /metrics`` page of this recorder (see :func:`exposition`)."""
        return exposition(self, active, workers, project_id)

    def started(self, run: Run) -> None:
        """A run was created (an async submit, or a sync call)."""

    def claimed(self, run: Run, queue_wait_seconds: float) -> None:
        """A worker claimed a run that had waited ``queue_wait_seconds`` in the queue."""

    def finished(self, run: Run, duration_seconds: float | None, sync_latency_seconds: float | None) -> None:
        """A run reached a terminal status."""


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: float = 0.0
    count: int = 0

    def add(self, value: float) -> None:
        for index, bound in enumerate(BUCKETS):
            if value <= bound:
                self.buckets[index] += 1
                break
        self.total += value
        self.count += 1


@dataclass
class Family:
    """One metric family as the Prometheus text format shows it."""

    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)
    histograms: list[tuple[Labels, _Histogram]] = field(default_factory=list)


_HELP = {
    "hatchway_runs_started_total": ("counter", "Runs created: async runs accepted and sync calls started."),
    "hatchway_runs_finished_total": ("counter", "Runs that reached SUCCESSFUL, FAILED or TERMINATED."),
    "hatchway_run_duration_seconds": ("histogram", "Duration of a finished run's last attempt."),
    "hatchway_sync_latency_seconds": ("histogram", "Time from accepting a sync call to its answer."),
    "hatchway_queue_wait_seconds": ("histogram", "Time a run waited in the queue before a worker claimed it."),
}


class PrometheusRecorder(MetricsRecorder):
    """Keeps the metrics in memory and renders them in the Prometheus text format."""

    name = "prometheus"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {}
        self._histograms: dict[str, dict[Labels, _Histogram]] = {}

    @staticmethod
    def _labels(run: Run, *extra: tuple[str, str]) -> Labels:
        return (("project", run.project_id), ("environment", run.environment), ("action", run.action_name), *extra)

    def _count(self, name: str, labels: Labels) -> None:
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[labels] = series.get(labels, 0.0) + 1

    def _observe(self, name: str, labels: Labels, value: float) -> None:
        with self._lock:
            self._histograms.setdefault(name, {}).setdefault(labels, _Histogram()).add(value)

    def started(self, run: Run) -> None:
        self._count("hatchway_runs_started_total", self._labels(run, ("mode", run.mode.value)))

    def claimed(self, run: Run, queue_wait_seconds: float) -> None:
        self._observe("hatchway_queue_wait_seconds", self._labels(run), queue_wait_seconds)

    def finished(self, run: Run, duration_seconds: float | None, sync_latency_seconds: float | None) -> None:
        mode = ("mode", run.mode.value)
        self._count("hatchway_runs_finished_total", self._labels(run, mode, ("status", run.status.value)))
        if duration_seconds is not None:
            self._observe("hatchway_run_duration_seconds", self._labels(run, mode), duration_seconds)
        if sync_latency_seconds is not None:
            labels = self._labels(run, ("sync_action", run.invoked))
            self._observe("hatchway_sync_latency_seconds", labels, sync_latency_seconds)

    def families(self, project_id: str | None = None) -> list[Family]:
        """A snapshot of every family, limited to one project's series when ``project_id`` is given."""

        def mine(labels: Labels) -> bool:
            return project_id is None or dict(labels).get("project") == project_id

        out = []
        with self._lock:
            for name, (kind, text) in _HELP.items():
                family = Family(name, kind, text)
                if kind == "histogram":
                    family.histograms = [
                        (labels, _Histogram(list(h.buckets), h.total, h.count))
                        for labels, h in sorted(self._histograms.get(name, {}).items())
                        if mine(labels)
                    ]
                else:
                    family.samples = [(k, v) for k, v in sorted(self._counters.get(name, {}).items()) if mine(k)]
                out.append(family)
        return out


class EmfRecorder(MetricsRecorder):
    """CloudWatch embedded metrics through powertools: one EMF line per event, flushed at once."""

    name = "emf"

    def __init__(self, namespace: str = "hatchway") -> None:
        self.namespace = namespace

    def _emit(self, name: str, unit: str, value: float, run: Run, **dimensions: str) -> None:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        try:
            with single_metric(
                name=name, unit=MetricUnit[unit], value=value, namespace=self.namespace,
                default_dimensions={"project": run.project_id, "action": run.action_name, **dimensions},
            ) as metric:  # fmt: skip
                metric.add_metadata("run_id", run.id)
        except Exception:  # metrics must never fail a run
            log.exception("could not emit a metric", extra={"run_id": run.id})

    def started(self, run: Run) -> None:
        self._emit("RunsStarted", "Count", 1, run, mode=run.mode.value)

    def claimed(self, run: Run, queue_wait_seconds: float) -> None:
        self._emit("QueueWait", "Milliseconds", round(queue_wait_seconds * 1000, 3), run)

    def finished(self, run: Run, duration_seconds: float | None, sync_latency_seconds: float | None) -> None:
        name = {RunStatus.SUCCESSFUL: "RunsSucceeded", RunStatus.FAILED: "RunsFailed"}.get(run.status, "RunsTerminated")
        self._emit(name, "Count", 1, run, mode=run.mode.value)
        if duration_seconds is not None:
            self._emit("RunDuration", "Milliseconds", round(duration_seconds * 1000, 3), run, mode=run.mode.value)
        if sync_latency_seconds is not None:
            self._emit("SyncLatency", "Milliseconds", round(sync_latency_seconds * 1000, 3), run)


def make_recorder(settings: Settings) -> MetricsRecorder:
    """The recorder the settings name (default: prometheus on the embedded backend, emf on aws)."""
    choice = settings.observability.metrics or ("emf" if settings.backend == "aws" else "prometheus")
    if choice == "prometheus":
        return PrometheusRecorder()
    if choice == "emf":
        return EmfRecorder()
    return MetricsRecorder()


def exposition(
    recorder: MetricsRecorder,
    active: Iterable[ActiveCount],
    workers: tuple[int, int] | None,
    project_id: str | None = None,
) -> str:
    """The whole ``GET /metrics`` page: the recorder's families plus gauges read at scrape time."""
    from hatchway import __version__

    families = recorder.families(project_id) if isinstance(recorder, PrometheusRecorder) else []
    runs = Family("hatchway_runs_active", "gauge", "Unfinished runs by status (from the store).")
    depth = Family("hatchway_queue_depth", "gauge", "Async runs waiting in the queue (from the store).")
    queued: dict[Labels, float] = {}
    for item in active:
        tenant: Labels = (("project", item.project_id), ("environment", item.environment))
        runs.samples.append(((*tenant, ("mode", item.mode), ("status", item.status)), item.count))
        if item.status == RunStatus.ENQUEUED and item.mode == Mode.ASYNC:
            queued[tenant] = queued.get(tenant, 0) + item.count
    depth.samples = sorted(queued.items())
    families += [runs, depth]
    if workers is not None:
        families.append(Family("hatchway_workers", "gauge", "Worker threads of this process.", [((), workers[0])]))
        families.append(
            Family("hatchway_workers_busy", "gauge", "Worker threads running an attempt now.", [((), workers[1])])
        )
    families.append(Family("hatchway_info", "gauge", "Version of this gateway.", [((("version", __version__),), 1)]))
    return render(families)


# ---------------------------------------------------------------------------------------------
# the text format


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _series(name: str, labels: Sequence[tuple[str, str]], value: float) -> str:
    inner = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels)
    return f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}"


def render(families: Iterable[Family]) -> str:
    """Families in the Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            lines.append(_series(family.name, labels, value))
        for labels, hist in family.histograms:
            running = 0
            for bound, count in zip(BUCKETS, hist.buckets, strict=True):
                running += count
                lines.append(_series(f"{family.name}_bucket", (*labels, ("le", repr(bound))), running))
            lines.append(_series(f"{family.name}_bucket", (*labels, ("le", "+Inf")), hist.count))
            lines.append(_series(f"{family.name}_sum", labels, hist.total))
            lines.append(_series(f"{family.name}_count", labels, hist.count))
    return "\n".join(lines) + "\n"


if TYPE_CHECKING:  # mypy checks that the recorders answer the port
    from hatchway import ports

    def _implements(recorder: MetricsRecorder) -> ports.Metrics:
        return recorder
