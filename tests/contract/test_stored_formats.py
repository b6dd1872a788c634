"""Existing databases and tables keep working: rows and items written by the store before it was
split into repositories (``fixtures/pre_split``, see ``stored_formats.py``) read back exactly as the
old code read them, and the same scenario writes exactly the same rows and items today."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.backends import drop, dynamodb_store
from tests.contract.stored_formats import (
    FIXTURES,
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
    assert [item for item in items if item not in claims] == json.loads((FIXTURES / "dynamodb.json").read_text())
