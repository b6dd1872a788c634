"""Operators' routes through the API in-process: /metrics, /stats, the console's files, JSON logs."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hatchway.api import create_app
from hatchway.client import (
    ApiError,
    ApplicationErrorResponse,
    Client,
    ForbiddenResponse,
    NotFoundResponse,
    UnauthorizedResponse,
    ValidationErrorResponse,
)
from hatchway.config import Settings
from hatchway.observability.logs import configure_logging
from hatchway.services import Services
from hatchway.testing import ResolverTransport
from hatchway.wiring import bootstrap, build_services
from tests.conftest import inprocess_client, make_settings

ECHO = {
    "name": "echo",
    "sync_actions": ["hello", "crash"],
    "container_parameters": {
        "entry_point": [sys.executable, "-c"],
        "command": [
            "import json,os,sys\n"
            "d=os.environ['HATCHWAY_DATA_DIR']\n"
            "c=json.load(open(d+'/config.json'))\n"
            "if c['action']=='crash': sys.exit(3)\n"
            "if c['action']=='run': json.dump({'ok': 1}, open(d+'/out/result.json','w'))\n"
            "else: print(json.dumps({'hi': 1}))\n"
        ],
    },
}


def values(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def project_client(admin: Client, services: Services, project: str, scopes: list[str]) -> Client:
    token = admin.create_token(scopes, project=project)["token"]
    return inprocess_client(services, token, project=project)


@pytest.fixture
def raw(services: Services) -> Iterator[Any]:
    """httpx over the resolver, for answers that are not JSON."""
    import httpx

    resolver = create_app(services)
    with httpx.Client(transport=ResolverTransport(resolver.resolve), base_url="http://hatchway.local") as http:
        yield http


def test_metrics_count_runs_and_show_each_project_only_its_own(client: Client, services: Services) -> None:
    # Given runs in two projects
    client.register_action(ECHO)
    client.call_sync("echo", "hello", {})
    assert client.wait(client.start_run("echo", {})["id"], timeout=20)["status"] == "SUCCESSFUL"
    client.create_project("other", "proj_other")
    client.register_action(ECHO, project="proj_other")
    client.call_sync("echo", "hello", {}, project="proj_other")
    # When the global admin scrapes /metrics
    everything = values(client.metrics())
    # Then runs are counted per project, action, mode and status
    mine = {("project", "proj_local"), ("environment", "development"), ("action", "echo")}
    assert everything[("hatchway_runs_started_total", frozenset(mine | {("mode", "sync")}))] == 1
    assert (
        everything[("hatchway_runs_finished_total", frozenset(mine | {("mode", "async"), ("status", "SUCCESSFUL")}))]
        == 1
    )
    assert everything[("hatchway_sync_latency_seconds_count", frozenset(mine | {("sync_action", "hello")}))] == 1
    assert everything[("hatchway_queue_wait_seconds_count", frozenset(mine))] == 1
    assert everything[("hatchway_workers", frozenset())] == 2
    assert any(dict(labels).get("project") == "proj_other" for _, labels in everything)
    # and a project's admin token sees its own project only, without the shared pool
    with project_client(client, services, "proj_other", ["admin"]) as other:
        theirs = values(other.metrics())
    assert {dict(labels).get("project") for _, labels in theirs} <= {"proj_other", None}
    assert ("hatchway_workers", frozenset()) not in theirs
    # and a token without the admin scope is refused, as is no token
    with project_client(client, services, "proj_local", ["runs:read"]) as reader, pytest.raises(ForbiddenResponse):
        reader.metrics()
    with inprocess_client(services, "wrong") as stranger, pytest.raises(UnauthorizedResponse):
        stranger.metrics()


def test_metrics_is_prometheus_text(client: Client, raw: Any) -> None:
    answer = raw.get("/metrics", headers={"authorization": "Bearer test-admin-token"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE hatchway_runs_started_total counter" in answer.text


def test_stats_for_the_dashboard(client: Client, services: Services) -> None:
    client.register_action(ECHO)
    client.call_sync("echo", "hello", {})
    with pytest.raises(ApplicationErrorResponse):  # counted as FAILED
        client.call_sync("echo", "crash", {})
    client.wait(client.start_run("echo", {})["id"], timeout=20)
    stats = client.stats("hour")
    assert stats["totals"]["SUCCESSFUL"] == 2 and stats["totals"]["FAILED"] == 1
    assert sum(b["counts"].get("SUCCESSFUL", 0) for b in stats["buckets"]) == 2
    by_invoked = {d["invoked"]: d for d in stats["durations"]}
    assert set(by_invoked) == {"hello", "crash", "run"}
    assert by_invoked["crash"]["failed"] == 1
    # each action's error rate: its failed runs of those that ended on their own
    rates = {d["invoked"]: d for d in stats["error_rates"]}
    assert rates["crash"] == {"action": "echo", "invoked": "crash", "finished": 1, "failed": 1, "error_rate": 1.0}
    assert rates["hello"] == {"action": "echo", "invoked": "hello", "finished": 1, "failed": 0, "error_rate": 0.0}
    assert rates["run"]["error_rate"] == 0.0 and set(rates) == {"hello", "crash", "run"}
    assert stats["workers"] == {"size": 2, "busy": 0}
    assert client.stats("day")["bucket_seconds"] == 1800
    with pytest.raises(ValidationErrorResponse):
        client.stats("week")
    # a project token sees its own numbers, not the shared pool, and never another project's
    with project_client(client, services, "proj_local", ["runs:read"]) as reader:
        assert reader.stats()["workers"] is None
        assert reader.stats()["totals"]["SUCCESSFUL"] == 2
        with pytest.raises(ForbiddenResponse):
            reader.stats(project="proj_other")


def test_console_files_carry_a_strict_policy_and_cache_well(raw: Any) -> None:
    assert raw.get("/ui").status_code == 308 and raw.get("/ui").headers["location"] == "ui/"
    index = raw.get("/ui/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    policy = index.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe" not in policy
    assert index.headers["x-content-type-options"] == "nosniff"
    assert index.headers["cache-control"] == "no-cache"
    assert raw.get("/ui/", headers={"if-none-match": index.headers["etag"]}).status_code == 304
    script = next(part.split('"')[1] for part in index.text.split("src=")[1:] if ".js" in part)
    packed = raw.get(f"/ui/{script}", headers={"accept-encoding": "gzip"})
    assert packed.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert packed.headers["content-type"] == "text/javascript; charset=utf-8"
    plain = raw.get(f"/ui/{script}", headers={"accept-encoding": "identity"})
    assert packed.content == plain.content  # httpx undid the gzip: the same file either way
    assert int(packed.headers["content-length"]) < len(plain.content) / 2
    missing = raw.get("/ui/nope.js")
    assert missing.status_code == 404 and missing.json()["error"] == "Not found"
    assert raw.get("/ui/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_console_can_be_turned_off(tmp_path: Any) -> None:
    settings = make_settings(tmp_path / "home", is_console_enabled=False)
    services = build_services(settings, pool=True)
    bootstrap(services)
    try:
        with inprocess_client(services) as hw, pytest.raises(NotFoundResponse, match="no such route"):
            hw.request("GET", "/ui/")
    finally:
        services.close()


def test_openapi_documents_the_operator_routes(raw: Any) -> None:
    paths = raw.get("/openapi.json").json()["paths"]
    assert "/metrics" in paths and "/v1/projects/{project_id}/stats" in paths and "/ui/" in paths
    stats = paths["/v1/projects/{project_id}/stats"]["get"]
    assert "401" in stats["responses"] and "200" in stats["responses"]


def test_log_lines_are_json_with_correlation(services: Services, settings: Settings) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    try:
        with inprocess_client(services) as hw:
            hw.register_action(ECHO)
            # When a sync call fails with an application error
            with pytest.raises(ApplicationErrorResponse) as failure:
                hw.call_sync("echo", "crash", {})
        error: ApiError = failure.value
    finally:
        configure_logging("INFO")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    # Then the server log has the error under the exceptionId the client got, with its run and project
    line = next(entry for entry in lines if entry.get("exceptionId") == error.exception_id)
    assert line["run_id"] == error.run_id and line["project_id"] == "proj_local"
    assert line["level"] == "ERROR" and line["service"] == "hatchway" and line["request_id"]
    # and every line written while the run was attempted carries its run id
    assert all(entry["run_id"] == error.run_id for entry in lines if entry["logger"] == "hatchway")
