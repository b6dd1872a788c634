"""Run metrics: counters and histograms fed by the store's run observer.

:meth:`MetricsRecorder.observe` is registered with :meth:`BaseRunRepo.observe`, so a run is counted
where its status really changes - by the API, a worker, the lease sweeper or an AWS state-change
event - exactly once per change. What is recorded:

* runs started (created) and finished (reaching SUCCESSFUL, FAILED or TERMINATED);
* the duration of a finished run's last attempt; for sync calls also the latency the caller saw
  (from acceptance to answer);
* queue wait: from the moment a run became claimable to the moment a worker claimed it.

:class:`PrometheusRecorder` keeps them in this process for ``GET /metrics`` (the numbers of the
runs this process saw move). In a serve group (``hatchway serve --processes N``, one port),
:class:`GroupRecorder` also shares them through a file per process, so that any process answers
the group's sum.
:class:`EmfRecorder` writes CloudWatch embedded-metric lines through powertools on AWS.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hatchway.domain.runs import ActiveCount, Mode, Run, RunStatus

if TYPE_CHECKING:
    from pathlib import Path

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

    def close(self) -> None:
        """Write out what is kept for others (a serve group's recorder); by default nothing."""


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
        #: events recorded so far: tells a serve group's timer whether there is anything to write
        self._changes = 0

    @staticmethod
    def _labels(run: Run, *extra: tuple[str, str]) -> Labels:
        return (("project", run.project_id), ("environment", run.environment), ("action", run.action_name), *extra)

    def _count(self, name: str, labels: Labels) -> None:
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[labels] = series.get(labels, 0.0) + 1
            self._changes += 1

    def _observe(self, name: str, labels: Labels, value: float) -> None:
        with self._lock:
            self._histograms.setdefault(name, {}).setdefault(labels, _Histogram()).add(value)
            self._changes += 1

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
        return _families(*self._snapshot(), project_id)

    def _snapshot(self) -> tuple[dict[str, dict[Labels, float]], dict[str, dict[Labels, _Histogram]]]:
        """Copies of the counters and histograms, taken under the lock."""
        with self._lock:
            counters = {name: dict(series) for name, series in self._counters.items()}
            histograms = {
                name: {labels: _Histogram(list(h.buckets), h.total, h.count) for labels, h in series.items()}
                for name, series in self._histograms.items()
            }
        return counters, histograms


def _families(
    counters: dict[str, dict[Labels, float]],
    histograms: dict[str, dict[Labels, _Histogram]],
    project_id: str | None,
) -> list[Family]:
    def mine(labels: Labels) -> bool:
        return project_id is None or dict(labels).get("project") == project_id

    out = []
    for name, (kind, text) in _HELP.items():
        family = Family(name, kind, text)
        if kind == "histogram":
            family.histograms = [(k, h) for k, h in sorted(histograms.get(name, {}).items()) if mine(k)]
        else:
            family.samples = [(k, v) for k, v in sorted(counters.get(name, {}).items()) if mine(k)]
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


def chosen(settings: Settings) -> str:
    """The recorder the settings name (default: prometheus on the embedded backend, emf on aws)."""
    return settings.observability.metrics or ("emf" if settings.backend == "aws" else "prometheus")


def make_recorder(
    settings: Settings,
    group: tuple[Path, int] | None = None,
    capacity: Callable[[], tuple[int, int] | None] = lambda: None,
) -> MetricsRecorder:
    """The recorder the settings name; ``group``, (the group's directory, this process's index),
    makes a serve group's prometheus recorder (``capacity``: this process's worker pool)."""
    choice = chosen(settings)
    if choice == "prometheus":
        return PrometheusRecorder() if group is None else GroupRecorder(*group, capacity)
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
    families = recorder.families(project_id) if isinstance(recorder, PrometheusRecorder) else []
    return _page(families, active, workers, "of this process")


def _page(families: list[Family], active: Iterable[ActiveCount], workers: tuple[int, int] | None, whose: str) -> str:
    """``families`` and the gauges of the page: the store's (read once, whoever answers) and the workers'."""
    from hatchway import __version__

    runs = Family("hatchway_runs_active", "gauge", "Unfinished runs by status (from the store).")
    depth = Family("hatchway_queue_depth", "gauge", "Async runs waiting in the queue (from the store).")
    queued: dict[Labels, float] = {}
    for item in active:
        tenant: Labels = (("project", item.project_id), ("environment", item.environment))
        runs.samples.append(((*tenant, ("mode", item.mode), ("status", item.status)), item.count))
        if item.status == RunStatus.ENQUEUED and item.mode == Mode.ASYNC:
            queued[tenant] = queued.get(tenant, 0) + item.count
    depth.samples = sorted(queued.items())
    families = [*families, runs, depth]
    if workers is not None:
        families.append(Family("hatchway_workers", "gauge", f"Worker threads {whose}.", [((), workers[0])]))
        families.append(
            Family("hatchway_workers_busy", "gauge", "Worker threads running an attempt now.", [((), workers[1])])
        )
    families.append(Family("hatchway_info", "gauge", "Version of this gateway.", [((("version", __version__),), 1)]))
    return render(families)


# ---------------------------------------------------------------------------------------------
# one page for a serve group (``hatchway serve --processes N``)


class GroupRecorder(PrometheusRecorder):
    """The recorder of one serve process of a group: a :class:`PrometheusRecorder` that also keeps
    its numbers in a file of its own in the group's private directory, so that ``GET /metrics`` -
    answered by whichever process the kernel picked - shows the whole gateway: its own live
    numbers plus the files of the others.

    The file is written every ``interval`` seconds by a thread (only when something changed), at
    each scrape and at shutdown (:meth:`close`) - never on the request path - as a whole, renamed
    into place. The others' numbers are thus at most ``interval`` old. A scrape writes this
    process's file before it reads the others', so whatever a page showed is on disk: a later page,
    from any process, shows no less. A process that replaces one that died starts from the file
    of its index (the dead one's last numbers), so the sum does not go backwards; what the dead
    one counted after its last write and nobody scraped is lost (at most ``interval`` of it).
    """

    def __init__(
        self,
        directory: Path,
        index: int,
        capacity: Callable[[], tuple[int, int] | None],
        interval: float | None = 1.0,
    ) -> None:
        super().__init__()
        self.directory = directory
        self.path = directory / f"{index}.json"
        self._capacity = capacity
        self._save_lock = threading.Lock()  # one writer at a time, so an older snapshot never lands last
        self._last: _Shared | None = None  # what was last written, after ``_last_changes`` events
        self._last_changes = 0
        self._is_failing = False
        self._stop = threading.Event()
        predecessor = _Shared.read(self.path)
        if predecessor is not None:
            self._counters, self._histograms = predecessor.counters, predecessor.histograms
        self._thread: threading.Thread | None = None
        if interval is not None:
            self._thread = threading.Thread(
                target=self._save_every, args=(interval,), name="hatchway-metrics-share", daemon=True
            )
            self._thread.start()

    def exposition(
        self, active: Iterable[ActiveCount], workers: tuple[int, int] | None, project_id: str | None = None
    ) -> str:
        """The page of the whole group (``workers`` is ignored: the files carry each process's)."""
        shares = [self.save(), *self._others()]
        counters, histograms = _merge(shares)
        total = None
        if project_id is None:  # the pool is every tenant's: only the global admin sees it
            pools = [share.workers for share in shares if share.workers is not None and _is_alive(share.pid)]
            if pools:
                total = (sum(size for size, _ in pools), sum(busy for _, busy in pools))
        return _page(_families(counters, histograms, project_id), active, total, "of every process of this gateway")

    def save(self) -> _Shared:
        """Write this process's numbers to its file if they changed; answers them."""
        with self._save_lock:
            workers = self._capacity()
            with self._lock:
                changes = self._changes
            last = self._last
            if last is None or self._is_failing or changes != self._last_changes or workers != last.workers:
                # the snapshot has at least ``changes`` events: at worst the next call writes again
                last = _Shared(os.getpid(), workers, *self._snapshot())
                try:
                    _write(self.path, last.dumps())
                except OSError as err:
                    if not self._is_failing:  # once, not every second
                        log.warning("could not share this process's metrics", extra={"reason": err.strerror})
                    self._is_failing = True
                else:
                    self._is_failing = False
                self._last, self._last_changes = last, changes
            return last

    def close(self) -> None:
        """Stop the timer and write the last numbers (at shutdown, once the workers stopped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.save()

    def _save_every(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.save()

    def _others(self) -> list[_Shared]:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        paths = (self.directory / name for name in names if name.endswith(".json"))
        return [share for path in paths if path != self.path and (share := _Shared.read(path)) is not None]


@dataclass
class _Shared:
    """One process's numbers, as its file holds them."""

    pid: int
    workers: tuple[int, int] | None
    counters: dict[str, dict[Labels, float]]
    histograms: dict[str, dict[Labels, _Histogram]]

    def dumps(self) -> bytes:
        return json.dumps(
            {
                "pid": self.pid,
                "workers": self.workers,
                "counters": {name: list(series.items()) for name, series in self.counters.items()},
                "histograms": {
                    name: [(labels, h.buckets, h.total, h.count) for labels, h in series.items()]
                    for name, series in self.histograms.items()
                },
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def read(cls, path: Path) -> _Shared | None:
        """The numbers in ``path``; None if there is no such file (or it cannot be read: logged)."""
        try:
            data = json.loads(path.read_bytes())
            workers = data["workers"]
            return cls(
                int(data["pid"]),
                None if workers is None else (int(workers[0]), int(workers[1])),
                {
                    str(name): {_labels(labels): float(value) for labels, value in series}
                    for name, series in data["counters"].items()
                },
                {
                    str(name): {
                        _labels(labels): _Histogram([int(n) for n in buckets], float(total), int(count))
                        for labels, buckets, total, count in series
                        if len(buckets) == len(BUCKETS)
                    }
                    for name, series in data["histograms"].items()
                },
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            log.warning("a serve process's metrics file cannot be read", extra={"file": path.name, "reason": str(err)})
            return None


def _labels(pairs: list[list[str]]) -> Labels:
    return tuple((str(key), str(value)) for key, value in pairs)


def _merge(shares: Iterable[_Shared]) -> tuple[dict[str, dict[Labels, float]], dict[str, dict[Labels, _Histogram]]]:
    """The sum of the processes' counters and histograms (series by series)."""
    counters: dict[str, dict[Labels, float]] = {}
    histograms: dict[str, dict[Labels, _Histogram]] = {}
    for share in shares:
        for name, series in share.counters.items():
            into = counters.setdefault(name, {})
            for labels, value in series.items():
                into[labels] = into.get(labels, 0.0) + value
        for name, hists in share.histograms.items():
            into_h = histograms.setdefault(name, {})
            for labels, h in hists.items():
                total = into_h.setdefault(labels, _Histogram())
                total.buckets = [a + b for a, b in zip(total.buckets, h.buckets, strict=True)]
                total.total += h.total
                total.count += h.count
    return counters, histograms


def _write(path: Path, data: bytes) -> None:
    """``data`` as ``path``, whole or not at all (a private file renamed into place)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with open(fd, "wb") as out:
        out.write(data)
    temporary.replace(path)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: alive
        return True
    return True


def group_directory(home: Path) -> Path:
    """A new private directory for the metrics files of the serve group this process leads,
    ``<home>/metrics/group-<pid>``; those of groups whose parent is gone are removed."""
    root = home / "metrics"
    root.mkdir(mode=0o700, exist_ok=True)
    root.chmod(0o700)
    for old in root.iterdir():
        pid = old.name.removeprefix("group-")
        if not (pid.isdigit() and int(pid) != os.getpid() and _is_alive(int(pid))):
            remove_group_directory(old)
    mine = root / f"group-{os.getpid()}"
    mine.mkdir(mode=0o700)
    return mine


def remove_group_directory(directory: Path) -> None:
    """Remove a group's metrics files (the group ended)."""
    if directory.is_dir() and not directory.is_symlink():
        shutil.rmtree(directory, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            directory.unlink()


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
