"""Records as the store wrote them before it was split into repositories, kept as fixtures.

``fixtures/pre_split/`` was produced at 4e97b5f (the single ``BaseStore``) by :func:`generate`: the
scenario of :func:`write` under a frozen clock, then the SQLite database as SQL, every DynamoDB item
as scanned, and what :func:`read` answered on each backend. ``test_stored_formats.py`` checks that
today's code reads those rows and items exactly as the old code did, and writes the same ones.
Regenerating the fixtures (``python -m tests.contract.stored_formats``) is only right when the stored
format changes on purpose - with a migration for existing tables and files.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hatchway.domain.pipelines.records import Execution, ExecutionStatus, StepState, StepStatus
from hatchway.domain.records import Document
from hatchway.domain.runs import LogEntry, Mode, Run, RunError, RunStatus, run_id_floor
from hatchway.domain.spec import digest_of
from hatchway.domain.tenants import Project, TokenRecord

FIXTURES = Path(__file__).with_name("fixtures") / "pre_split"
#: the clock while the scenario writes (2026-01-01), and "never" for what must not expire when read
FROZEN_MS = 1_767_225_600_000
FAR_MS = 4_102_444_800_000
P, DEV = "proj_fmt", "development"


def run_id(offset_ms: int, serial: int) -> str:
    return f"{run_id_floor(FROZEN_MS + offset_ms)}{serial:016d}"


RUNS = {name: run_id(index * 1000, index) for index, name in enumerate(("queued", "leased", "held", "done", "sync"))}
EXECUTIONS = {name: "pex_" + run_id(index * 1000, index)[4:] for index, name in enumerate(("active", "ended"))}
ETL = {"name": "etl", "tags": ["nightly"], "container_parameters": {"command": ["true"]}}
ETL_V2 = {**ETL, "description": "second version", "parameters": [{"name": "#token", "required": False}]}
GONE = {"name": "gone", "container_parameters": {"command": ["false"]}}
FLOW = {"name": "flow", "steps": [{"name": "a", "action": "etl"}]}


@contextlib.contextmanager
def frozen_clock() -> Iterator[None]:
    """Every ``now_ms()`` of the rules answers :data:`FROZEN_MS` (their one source of time)."""
    import hatchway.domain.runs as runs_module

    real = runs_module.time
    runs_module.time = SimpleNamespace(time=lambda: FROZEN_MS / 1000)  # type: ignore[assignment]
    try:
        yield
    finally:
        runs_module.time = real


def _run(name: str, **fields: Any) -> Run:
    created = FROZEN_MS + list(RUNS).index(name) * 1000
    base: dict[str, Any] = {
        "id": RUNS[name],
        "project_id": P,
        "environment": DEV,
        "action_name": "etl",
        "action_version": 2,
        "action_digest": digest_of(ETL_V2),
        "created_at": created,
        "available_at": created,
        "parameters": {"day": "monday", "#token": "hwenc:v1:abc"},
        "max_attempts": 3,
    }
    return Run(**{**base, **fields})


def write(repos: Any) -> None:
    """One record of every kind and state, through the repositories' rules."""
    tenants, actions, runs = repos.tenants, repos.actions, repos.runs
    tenants.create_project(Project(P, "Formats", FROZEN_MS))
    tenants.put_token(TokenRecord("tok_fmt_a", P, "hash-a", ["admin"], None, FROZEN_MS, FAR_MS, None, "ci"))
    tenants.put_token(TokenRecord("tok_fmt_b", P, "hash-b", ["runs:read"], [DEV], FROZEN_MS + 1))
    tenants.touch_token("tok_fmt_a", FROZEN_MS + 5)

    for document in (ETL, ETL_V2, GONE):
        actions.register_version(P, DEV, document, digest_of(document))
    actions.delete_action(P, DEV, "gone")

    runs.create_run(_run("queued"))
    runs.create_run(
        _run(
            "leased",
            status=RunStatus.INPROGRESS,
            attempt=1,
            started_at=FROZEN_MS + 1500,
            lease_owner="node-a/w0",
            lease_until=FROZEN_MS + 30_000,
        )
    )
    runs.heartbeat(RUNS["leased"], "node-a/w0", 60)
    runs.append_logs(
        RUNS["leased"],
        [
            LogEntry("stdout", FROZEN_MS + 1600, "started"),
            LogEntry("stderr", FROZEN_MS + 1700, "oops", {"name": "E", "message": "m"}),
        ],
    )
    runs.create_run(_run("held", external_id="batch-job-1", external_user_id="user-1"))
    done = runs.create_run(_run("done", idempotency_key="key-1", options={"callback_url": "https://example.com/cb"}))
    runs.transition(
        done.id,
        RunStatus.ENQUEUED,
        RunStatus.INPROGRESS,
        attempt=1,
        started_at=FROZEN_MS + 3100,
        lease_owner="node-a/w1",
        lease_until=FROZEN_MS + 33_000,
    )
    entries = [LogEntry("stdout", FROZEN_MS + 3200 + i, f"line {i}") for i in range(3)]
    runs.append_logs(done.id, entries)
    runs.transition(
        done.id,
        RunStatus.INPROGRESS,
        RunStatus.FAILED,
        finished_at=FROZEN_MS + 3900,
        duration_ms=800,
        lease_owner=None,
        lease_until=None,
        ret={"rows": [1, 2.5, None, "ü"]},
        exports={"n": 3},
        os=entries,
        error=RunError("application", "boom", "exc_fmt", 500),
        status_reason="failed",
    )
    sync = _run(
        "sync",
        mode=Mode.SYNC,
        invoked="check",
        status=RunStatus.SUCCESSFUL,
        attempt=1,
        started_at=FROZEN_MS + 4000,
        finished_at=FROZEN_MS + 4050,
        duration_ms=50,
        ret={"ok": True},
    )
    runs.record_sync_run(sync, [LogEntry("stderr", FROZEN_MS + 4010, "checked")])

    idempotency = repos.idempotency
    idempotency.idempotency_begin("proj_fmt/development/POST /runs/key-open", "hash-1", RUNS["queued"], 60, 3600)
    owned = idempotency.idempotency_begin("proj_fmt/development/POST /runs/key-1", "hash-2", RUNS["done"], 60, 3600)
    idempotency.idempotency_complete(owned.record, {"id": RUNS["done"], "status": "ENQUEUED"}, 202, 3600)

    repos.documents.put_document(Document(P, DEV, "cache", "tag-1", {"ret": {"v": 1}}, expires_at=FAR_MS))
    repos.documents.put_document(Document(P, DEV, "session", "s1", {"type": "python"}))

    pipelines = repos.pipelines
    pipelines.register_pipeline(P, DEV, "flow", FLOW, "sha256:" + "1" * 64, "arn:aws:states:flow:1")
    pipelines.register_pipeline(P, DEV, "flow", {**FLOW, "description": "v2"}, "sha256:" + "2" * 64)
    active = Execution(
        EXECUTIONS["active"],
        P,
        DEV,
        "flow",
        2,
        variables={"K": "v"},
        steps=[StepState("a"), StepState("b")],
        created_at=FROZEN_MS,
        triggered_by="tok_fmt_a",
    )
    pipelines.create_execution(active)

    def start(current: Execution) -> Execution:
        current.status = ExecutionStatus.INPROGRESS
        current.step("a").status = StepStatus.INPROGRESS
        current.step("a").run_id = RUNS["queued"]
        return current

    pipelines.update_execution(active.id, start)
    ended = Execution(
        EXECUTIONS["ended"],
        P,
        DEV,
        "flow",
        1,
        status=ExecutionStatus.SUCCESSFUL,
        outcome="SUCCESSFUL",
        created_at=FROZEN_MS + 1000,
        finished_at=FROZEN_MS + 2000,
        engine="stepfunctions",
        engine_ref="arn:aws:states:execution:1",
    )
    pipelines.create_execution(ended)


def read(repos: Any) -> dict[str, Any]:
    """Everything :func:`write` stored, read back through the rules (and one primitive), as JSON."""
    tenants, actions, runs = repos.tenants, repos.actions, repos.runs
    gone = actions.get_action(P, DEV, "gone", include_deleted=True)
    out: dict[str, Any] = {
        "project": tenants.get_project(P),
        "tokens": tenants.list_tokens(P),
        "token": tenants.get_token("tok_fmt_a"),
        "action": actions.get_action(P, DEV, "etl"),
        "action_v1": actions.get_action(P, DEV, "etl", version=1),
        "action_by_digest": actions.get_action(P, DEV, "etl", digest=digest_of(ETL)),
        "actions": actions.list_actions(P, DEV, 50, None),
        "tagged": actions.list_actions(P, DEV, 50, None, tag="nightly"),
        "versions": actions.list_versions(P, DEV, "etl", 50, None),
        "gone": [actions.get_action(P, DEV, "gone"), gone],
        "runs": {name: runs.get_run(run_id) for name, run_id in RUNS.items()},
        "run_list": runs.list_runs(P, DEV, 50, None),
        "failed_runs": runs.list_runs(P, DEV, 50, None, {"status": "FAILED"}),
        "user_runs": runs.list_runs(P, DEV, 50, None, {"external_user_id": "user-1"}),
        "logs": {name: runs.read_logs(RUNS[name], 0, 50) for name in ("leased", "done", "sync")},
        "ready": runs.ready_runs(now=FAR_MS),
        "remote": runs.remote_runs(FAR_MS),
        "active_counts": runs.active_counts(),
        "summaries": runs.run_summaries(P, DEV, FROZEN_MS),
        "idempotency": [
            repos.idempotency._get_idempotency(f"proj_fmt/development/POST /runs/{key}")
            for key in ("key-open", "key-1")
        ],
        "documents": [
            repos.documents.get_document(P, DEV, "cache", "tag-1"),
            repos.documents.list_documents(P, DEV, "session"),
        ],
        "pipeline": repos.pipelines.get_pipeline(P, DEV, "flow"),
        "pipeline_v1": repos.pipelines.get_pipeline(P, DEV, "flow", 1),
        "pipelines": repos.pipelines.list_pipelines(P, DEV, 50, None),
        "executions": {name: repos.pipelines.get_execution(eid) for name, eid in EXECUTIONS.items()},
        "execution_list": repos.pipelines.list_executions(P, DEV, None, 50, None),
        "active_executions": repos.pipelines.active_executions("local"),
    }
    return json.loads(json.dumps(out, default=_plain, sort_keys=True))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    raise TypeError(f"{type(value).__name__} is not a record")


# ---- the stored form of each backend -----------------------------------------------------------


def sqlite_rows(path: Path, schema: bool = False) -> dict[str, list[list[Any]]]:
    """Every row of every table, sorted; with ``schema``, the tables' and indexes' SQL too."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        rows = {
            table: sorted((list(row) for row in conn.execute(f"SELECT * FROM {table}")), key=json.dumps)  # noqa: S608
            for table in tables
        }
        if schema:
            rows["sqlite_master"] = [
                list(row)
                for row in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
            ]
        return rows


def sqlite_restore(dump: str, path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(dump)


def dynamodb_items(db: Any, table: str) -> list[dict[str, Any]]:
    """Every item, sorted by key, binary values in base64 (JSON)."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = db.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    encoded = [{name: _encode(value) for name, value in item.items()} for item in items]
    return sorted(encoded, key=lambda item: (item["pk"]["S"], item["sk"]["S"]))


def dynamodb_restore(db: Any, table: str, items: list[dict[str, Any]]) -> None:
    for item in items:
        db.put_item(TableName=table, Item={name: _decode(value) for name, value in item.items()})


def _encode(value: dict[str, Any]) -> dict[str, Any]:
    if "B" in value:
        return {"B": base64.b64encode(value["B"]).decode()}
    if "L" in value:
        return {"L": [_encode(v) for v in value["L"]]}
    return value


def _decode(value: dict[str, Any]) -> dict[str, Any]:
    if "B" in value:
        return {"B": base64.b64decode(value["B"])}
    if "L" in value:
        return {"L": [_decode(v) for v in value["L"]]}
    return value


# ---- how the fixtures were made -------------------------------------------------------------


def generate(sqlite_repos: Any, dynamodb_repos: Any, sqlite_path: Path, db: Any, table: str) -> None:
    """Write the scenario on both backends and keep what they stored and read (see the docstring)."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    with frozen_clock():
        write(sqlite_repos)
        write(dynamodb_repos)
    with contextlib.closing(sqlite3.connect(sqlite_path)) as conn:
        dump = "\n".join(conn.iterdump()) + "\n"
    (FIXTURES / "sqlite.sql").write_text(dump)
    (FIXTURES / "dynamodb.json").write_text(json.dumps(dynamodb_items(db, table), indent=1, sort_keys=True) + "\n")
    reads = {"sqlite": read(sqlite_repos), "dynamodb": read(dynamodb_repos)}
    (FIXTURES / "reads.json").write_text(json.dumps(reads, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


if __name__ == "__main__":  # pragma: no cover - run by hand, see the module docstring
    sys.exit("build the two stores of the current code and call generate(); see the module docstring")
