"""What observability costs: the API in-process with tracing off vs on (in-memory exporter),
rendering /metrics for many series, and a serve group's sharing of them (a process's timed write of
its file; a page merged from two processes' numbers). Prints ratios against the baseline measured
in the same run.

    python -m bench.observability
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from hatchway.api import create_app
from hatchway.config import Settings
from hatchway.domain.runs import Mode, Run, RunStatus, now_ms
from hatchway.observability.metrics import GroupRecorder, PrometheusRecorder, exposition
from hatchway.observability.tracing import configure_tracing
from hatchway.testing import ResolverTransport
from hatchway.wiring import bootstrap, build_services

TOKEN = "bench-admin"  # noqa: S105 - a throwaway local token


def api_latency(home: Path, rounds: int = 300) -> float:
    """Median seconds of GET /v1/projects/proj_local/runs?limit=5 through the resolver."""
    import httpx

    settings = Settings.from_env({"HATCHWAY_HOME": str(home), "HATCHWAY_BOOTSTRAP_TOKEN": TOKEN})
    services = build_services(settings, pool=True)
    bootstrap(services)
    app = create_app(services)
    with httpx.Client(transport=ResolverTransport(app.resolve), base_url="http://bench") as http:
        headers = {"authorization": f"Bearer {TOKEN}"}
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            http.get("/v1/projects/proj_local/runs", params={"limit": 5}, headers=headers)
            samples.append(time.perf_counter() - start)
    services.close()
    return statistics.median(samples[rounds // 10 :])


def _fill(recorder: PrometheusRecorder, series: int) -> None:
    now = now_ms()
    for i in range(series):
        run = Run(
            id=f"run_{i}", project_id=f"proj_{i % 20}", environment="development", action_name=f"a{i % 100}",
            action_version=1, action_digest="sha256:" + "0" * 64, invoked="run", mode=Mode.ASYNC,
            status=RunStatus.ENQUEUED, created_at=now, available_at=now,
        )  # fmt: skip
        recorder.observe(run, None)
        recorder.observe(replace(run, status=RunStatus.SUCCESSFUL, duration_ms=i), RunStatus.ENQUEUED)


def metrics_render(series: int = 2000) -> float:
    recorder = PrometheusRecorder()
    _fill(recorder, series)
    start = time.perf_counter()
    text = exposition(recorder, [], (2, 1))
    elapsed = time.perf_counter() - start
    labels = len({(i % 20, i % 100) for i in range(series)})
    print(f"/metrics after {series} runs in {labels} label sets: {elapsed * 1000:.1f} ms, {len(text) // 1024} KiB")
    return elapsed


def group_sharing(directory: Path, series: int = 2000, rounds: int = 50) -> tuple[float, float]:
    """Seconds of one process's write of its file (what its timer does at most once a second) and of
    a page merged from two processes, each with ``series`` runs counted."""
    first, second = (GroupRecorder(directory, index, lambda: (1, 0), interval=None) for index in (0, 1))
    _fill(first, series)
    _fill(second, series)
    second.save()
    saves = []
    for i in range(rounds):
        first.started(replace(_RUN, id=f"run_x{i}"))  # a change: the file is written again
        start = time.perf_counter()
        first.save()
        saves.append(time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(rounds):
        first.exposition([], (1, 0))
    page = (time.perf_counter() - start) / rounds
    save = statistics.median(saves)
    print(f"serve group, {series} runs in each of 2 processes: a timed write {save * 1000:.2f} ms, "
          f"a merged /metrics {page * 1000:.1f} ms")  # fmt: skip
    return save, page


_RUN = Run(
    id="run_x", project_id="proj_0", environment="development", action_name="a0", action_version=1,
    action_digest="sha256:" + "0" * 64, invoked="run", mode=Mode.ASYNC, status=RunStatus.ENQUEUED,
    created_at=0, available_at=0,
)  # fmt: skip


def main() -> int:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    with tempfile.TemporaryDirectory() as tmp:
        configure_tracing(None)
        off = api_latency(Path(tmp) / "off")
        configure_tracing(exporter=InMemorySpanExporter())
        on = api_latency(Path(tmp) / "on")
        configure_tracing(None)
    print(f"API request, tracing off: {off * 1e6:.0f} us; on (in-memory exporter): {on * 1e6:.0f} us")
    print(f"  ratio on/off {on / off:.2f}")
    metrics_render()
    with tempfile.TemporaryDirectory() as tmp:
        group_sharing(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
