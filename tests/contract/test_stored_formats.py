"""Existing databases and tables keep working: rows and items written by the store before it was
split into repositories (``fixtures/pre_split``, see ``stored_formats.py``) read back exactly as the
old code read them, and the same scenario writes exactly the same rows and items today."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hatchway.domain.runs import LogEntry, RunStatus
from hatchway.errors import InternalError
from tests.contract.backends import drop, dynamodb_store
from tests.contract.stored_formats import (
    DEV,
    FIXTURES,
    FROZEN_MS,
    RUNS,
    P,
    dynamodb_items,
    dynamodb_restore,
    frozen_clock,
    read,
    sqlite_restore,
    sqlite_rows,
    write,
)

READS = json.loads((FIXTURES / "reads.json").read_text())


def open_sqlite(path: Path) -> Any:
    from hatchway.store.sqlite import SqliteStore

    return SqliteStore(path)


@pytest.fixture
def dynamodb(moto_aws: Any) -> Iterator[Any]:
    store = dynamodb_store(moto_aws)  # two queue shards, as the fixtures were written with
    yield store
    drop(store)


def test_sqlite_rows_written_before_the_split_read_back_the_same(tmp_path: Path) -> None:
    sqlite_restore((FIXTURES / "sqlite.sql").read_text(), tmp_path / "old.db")
    store = open_sqlite(tmp_path / "old.db")
    try:
        assert read(store) == READS["sqlite"]
    finally:
        store.close()


def test_sqlite_schema_and_rows_written_today_are_those_written_before_the_split(tmp_path: Path) -> None:
    sqlite_restore((FIXTURES / "sqlite.sql").read_text(), tmp_path / "old.db")
    store = open_sqlite(tmp_path / "new.db")
    try:
        with frozen_clock():
            write(store)
    finally:
        store.close()
    assert sqlite_rows(tmp_path / "new.db", schema=True) == sqlite_rows(tmp_path / "old.db", schema=True)


@pytest.mark.aws
def test_dynamodb_items_written_before_the_split_read_back_the_same(dynamodb: Any) -> None:
    dynamodb_restore(dynamodb.table.db, dynamodb.table.name, json.loads((FIXTURES / "dynamodb.json").read_text()))
    assert read(dynamodb) == READS["dynamodb"]


@pytest.mark.aws
def test_dynamodb_items_written_today_are_those_written_before_the_split(dynamodb: Any) -> None:
    with frozen_clock():
        write(dynamodb)
    items = dynamodb_items(dynamodb.table.db, dynamodb.table.name)
    # a project's name claim (issue 20: names unique per deployment) is the one kind of item added since
    claims = [item for item in items if item["pk"]["S"].startswith("PROJECTNAME#")]
    assert len(claims) == 1
    # and a project is now also on gsi1 under PROJECTS (issue 19: GET /v1/projects lists them):
    # two attributes added, every other attribute as it was
    projects = [item for item in items if item["sk"]["S"] == "P" and item["pk"]["S"].startswith("PROJECT#")]
    assert projects and all(
        item.pop("gsi1pk") == {"S": "PROJECTS"} and item.pop("gsi1sk") == {"S": item["pk"]["S"][len("PROJECT#") :]}
        for item in projects
    )
    # and a run's partition (the run, its log) starts with its project (issue 17 item 8: a task role's
    # dynamodb:LeadingKeys reach its own project's runs alone): the key moved, nothing else
    moved = [item for item in items if item["pk"]["S"].startswith(f"RUN#{P}#")]
    assert moved and all(item["pk"]["S"].count("#") == 2 for item in items if item["pk"]["S"].startswith("RUN#"))
    for item in moved:
        item["pk"] = {"S": "RUN#" + item["pk"]["S"].removeprefix(f"RUN#{P}#")}
    assert [item for item in items if item not in claims] == json.loads((FIXTURES / "dynamodb.json").read_text())


@pytest.mark.aws
def test_dynamodb_runs_written_before_keys_carried_the_project_are_read_and_written_where_they_are(
    dynamodb: Any,
) -> None:
    from hatchway.store.dynamodb import DynamoDbStore

    # Given a table upgraded in place: its runs (and their logs) under RUN#<id>
    table = dynamodb.table
    dynamodb_restore(table.db, table.name, json.loads((FIXTURES / "dynamodb.json").read_text()))
    leased = RUNS["leased"]
    gateway = DynamoDbStore(table.name, table.aws, table.bucket, queue_shards=2).runs  # a fresh process
    # When the gateway reads one with its project (the API), cancels it and logs to it
    run = gateway.get_run(leased, P, DEV)
    assert run is not None and run.status == RunStatus.INPROGRESS
    gateway.transition(leased, RunStatus.INPROGRESS, RunStatus.TERMINATING, status_reason="cancelled")
    gateway.append_logs(leased, [LogEntry("stdout", FROZEN_MS + 5000, "later")])
    # Then it stays under its old key, its log goes on after its old entries, nothing is copied
    items = dynamodb_items(table.db, table.name)
    assert not [item for item in items if item["pk"]["S"].startswith(f"RUN#{P}#{leased}")]
    [record] = [item for item in items if item["pk"]["S"] == f"RUN#{leased}" and item["sk"]["S"] == "R"]
    assert record["status"] == {"S": "TERMINATING"}
    assert [entry.msg for entry in gateway.read_logs(leased).items] == ["started", "oops", "later"]
    # and another project never sees it, with or without the old key's fallback
    assert DynamoDbStore(table.name, table.aws, table.bucket, queue_shards=2).runs.get_run(leased, "proj_b") is None
    # a run container's repository (no fallback: its role may not read RUN#<id>) neither finds it
    # under its project nor looks a run up without one
    inside = DynamoDbStore(table.name, table.aws, table.bucket, queue_shards=2, legacy_run_keys=False).runs
    assert inside.get_run(leased, P) is None
    with pytest.raises(InternalError):
        inside.get_run(leased)


@pytest.mark.aws
def test_dynamodb_runs_are_found_in_another_process_with_their_project(dynamodb: Any) -> None:
    from hatchway.store.dynamodb import DynamoDbStore

    table = dynamodb.table
    with frozen_clock():
        write(dynamodb)
    queued = RUNS["queued"]

    def fresh(legacy: bool = True) -> Any:
        return DynamoDbStore(table.name, table.aws, table.bucket, queue_shards=2, legacy_run_keys=legacy).runs

    # a process that never saw the run finds it with its project (the API, an event, the runner's
    # payload, the container's variable), not by its id alone: its key starts with the project
    assert fresh().get_run(queued) is None
    found = fresh(legacy=False)
    assert found.get_run(queued, P) is not None
    # once found, the rules' reads and writes by id alone reach it
    found.transition(queued, RunStatus.ENQUEUED, RunStatus.TERMINATED, status_reason="cancelled")
    assert [entry.msg for entry in found.read_logs(queued).items] == []
    assert fresh().get_run(queued, P).status == RunStatus.TERMINATED  # type: ignore[union-attr]
