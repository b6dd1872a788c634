"""Tracing: one request's spans, through the in-memory exporter of the OpenTelemetry SDK."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="tracing tests need the otel extra: pip install 'hatchway[otel]'")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from hatchway.config import Settings  # noqa: E402
from hatchway.observability.tracing import configure_tracing, valid_traceparent  # noqa: E402
from hatchway.services import Services  # noqa: E402
from hatchway.wiring import bootstrap, build_services  # noqa: E402
from tests.conftest import inprocess_client  # noqa: E402
from tests.helpers import wait_until  # noqa: E402

#: answers (sync) or returns (run) the TRACEPARENT it was given
TRACE_ECHO = {
    "name": "trace-echo",
    "sync_actions": ["show"],
    "container_parameters": {
        "entry_point": [sys.executable, "-c"],
        "command": [
            "import json,os\n"
            "d=os.environ['HATCHWAY_DATA_DIR']\n"
            "c=json.load(open(d+'/config.json'))\n"
            "answer={'traceparent': os.environ.get('TRACEPARENT')}\n"
            "if c['action']=='run':\n"
            "    json.dump(answer, open(d+'/out/result.json','w'))\n"
            "else:\n"
            "    print(json.dumps(answer))\n"
        ],
    },
}
CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    configure_tracing(exporter=memory)
    yield memory
    configure_tracing(None)


@pytest.fixture
def traced_services(settings: Settings, exporter: InMemorySpanExporter) -> Iterator[Services]:
    services = build_services(settings, pool=True)  # built after tracing is on, so its store is instrumented
    bootstrap(services)
    yield services
    services.close()


def by_name(spans: Any) -> dict[str, Any]:
    return {s.name: s for s in spans}


def test_a_sync_call_is_one_trace_from_request_to_action_process(
    traced_services: Services, exporter: InMemorySpanExporter
) -> None:
    with inprocess_client(traced_services) as hw:
        hw.register_action(TRACE_ECHO)
        exporter.clear()
        # Given a caller that sends its own trace context
        hw._http.headers["traceparent"] = CALLER
        # When it calls a sync action
        answer = hw.call_sync("trace-echo", "show", {})
    spans = by_name(exporter.get_finished_spans())
    request = spans["POST /v1/projects/{project_id}/actions/{name}/sync/{sync_action}"]
    attempt = spans["run trace-echo show"]
    executor = spans["executor process"]
    process = spans["action trace-echo show"]
    # Then every span belongs to the caller's trace, nested request -> attempt -> executor -> process
    trace_id = int(CALLER.split("-")[1], 16)
    assert {s.context.trace_id for s in spans.values()} == {trace_id}
    assert request.parent.span_id == int(CALLER.split("-")[2], 16)
    assert attempt.parent.span_id == request.context.span_id
    assert executor.parent.span_id == attempt.context.span_id
    assert process.parent.span_id == executor.context.span_id
    # and the store was traced inside the request
    assert spans["store.create_run"].parent.span_id == request.context.span_id
    assert spans["store.transition"].context.trace_id == trace_id
    # and the action process received the process span's context as TRACEPARENT
    received = answer["ret"]["traceparent"]
    assert valid_traceparent(received) == received
    assert received.split("-")[1] == f"{trace_id:032x}"
    assert received.split("-")[2] == f"{process.context.span_id:016x}"
    assert process.attributes["process.exit_code"] == 0
    assert request.attributes["http.response.status_code"] == 200
    assert attempt.attributes["hatchway.run_id"] == answer["run_id"]


def test_an_async_run_continues_the_trace_of_the_request_that_submitted_it(
    traced_services: Services, exporter: InMemorySpanExporter
) -> None:
    from hatchway.worker import WorkerPool

    pool = WorkerPool(traced_services, size=1)
    pool.start()
    try:
        with inprocess_client(traced_services) as hw:
            hw.register_action(TRACE_ECHO)
            exporter.clear()
            # When a run is submitted and a worker runs it later, in another thread
            run = hw.start_run("trace-echo", {})
            final = hw.wait(run["id"], timeout=20)
    finally:
        pool.stop(grace_seconds=2)
    # (the attempt's span ends after the run's outcome is written: wait for the very spans we read)
    wanted = ("POST /v1/projects/{project_id}/actions/{name}/runs", "run trace-echo run")

    def finished() -> dict[str, Any] | None:
        named = by_name(exporter.get_finished_spans())
        return named if all(name in named for name in wanted) else None

    spans = wait_until(finished, 10, what="the request's and the attempt's spans")
    submit = spans["POST /v1/projects/{project_id}/actions/{name}/runs"]
    attempt = spans["run trace-echo run"]
    # Then the worker's attempt is a child of the submitting request, in the same trace
    assert attempt.parent.span_id == submit.context.span_id
    assert attempt.context.trace_id == submit.context.trace_id
    assert final["ret"]["traceparent"].split("-")[1] == f"{submit.context.trace_id:032x}"


def test_tracing_off_adds_nothing(services: Services) -> None:
    # Given the default settings (tracing off)
    with inprocess_client(services) as hw:
        hw.register_action(TRACE_ECHO)
        answer = hw.call_sync("trace-echo", "show", {})
    # Then the action gets no trace context
    assert answer["ret"] == {"traceparent": None}


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
    ],
)
def test_malformed_traceparents_are_ignored(value: str) -> None:
    assert valid_traceparent(value) is None
