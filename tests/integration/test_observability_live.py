"""A real `hatchway serve`: its JSON log lines, /metrics, and traces exported over OTLP/HTTP to a
collector listening in the test."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hatchway.client import ApplicationErrorResponse, Client
from tests.helpers import ADMIN_TOKEN, LiveServer, child_env, free_port, wait_until

pytestmark = pytest.mark.integration

CRASH = {
    "name": "crasher",
    "sync_actions": ["boom"],
    "container_parameters": {"entry_point": [sys.executable, "-c"], "command": ["import sys; sys.exit(3)"]},
}


class Collector:
    """The receiving end of OTLP/HTTP: decodes the protobuf export requests it is sent."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[Any] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        collector.spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    pytest.importorskip("opentelemetry.proto", reason="needs the otel extra: pip install 'hatchway[otel]'")
    receiver = Collector()
    yield receiver
    receiver.close()


def test_logs_metrics_and_traces_of_a_live_server(tmp_path: Path, collector: Collector) -> None:
    server = LiveServer(
        tmp_path / "live",
        HATCHWAY_TRACING="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        OTEL_BSP_SCHEDULE_DELAY="100",
    ).start()
    try:
        with server.client() as hw:
            hw.register_action(CRASH)
            # When a sync call fails with an application error
            with pytest.raises(ApplicationErrorResponse) as failure:
                hw.call_sync("crasher", "boom", {})
            metrics = hw.metrics()

        # Then the server's log has one JSON line under the exceptionId the caller got, correlated
        def logged() -> dict[str, Any] | None:
            for line in server.log().splitlines():
                if line.startswith("{") and failure.value.exception_id in line:
                    entry: dict[str, Any] = json.loads(line)
                    return entry
            return None

        entry = wait_until(logged, 10, what="the error's log line")
        assert entry["run_id"] == failure.value.run_id
        assert entry["project_id"] == "proj_local" and entry["request_id"] and entry["level"] == "ERROR"
        assert all(json.loads(line) for line in server.log().splitlines() if line.startswith("{"))
        # and /metrics counted the failed sync call
        assert 'hatchway_runs_finished_total{project="proj_local",environment="development",action="crasher"' in metrics
        # and the request's spans reached the collector over OTLP, in one trace
        request = "POST /v1/projects/{project_id}/actions/{name}/sync/{sync_action}"
        wanted = {request, "run crasher boom", "executor process", "action crasher boom"}
        wait_until(lambda: wanted <= {s.name for s in collector.spans}, 15, what="spans at the collector")
        sync_spans = [s for s in collector.spans if s.name in wanted]
        assert len({s.trace_id for s in sync_spans}) == 1
    finally:
        server.kill()


def test_stderr_holds_only_json_lines_and_the_banner_goes_to_stdout(tmp_path: Path) -> None:
    # Given `hatchway serve` with its two streams kept apart, as an operator collecting logs would
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    with (home / "out.txt").open("wb") as out, (home / "err.jsonl").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hatchway", "serve", "--port", str(port)],
            env=child_env(home), stdout=out, stderr=err, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: "hatchway serving on" in (home / "out.txt").read_text(), 20, what="the banner")
        # When a request logs at INFO and a malformed request makes the HTTP server warn
        with Client(f"http://127.0.0.1:{port}", ADMIN_TOKEN) as hw:
            hw.register_action(CRASH)
            with pytest.raises(ApplicationErrorResponse):
                hw.call_sync("crasher", "boom", {})
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"NOT HTTP\r\n\r\n")
            raw.recv(1024)

        # Then stderr is JSON lines only, the server's warning among them
        def warned() -> list[dict[str, Any]] | None:
            lines = (home / "err.jsonl").read_text().splitlines()
            entries = [json.loads(line) for line in lines]
            return entries if any(e.get("logger", "").startswith("uvicorn") for e in entries) else None

        entries = wait_until(warned, 10, what="the HTTP server's warning in the log")
        assert any(e["level"] == "ERROR" and e.get("exceptionId") for e in entries)
        assert "hatchway serving on" not in (home / "err.jsonl").read_text()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
