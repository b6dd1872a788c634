"""The SQLite store's file: WAL mode, the durability setting, and a private file."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from hatchway.store.sqlite import SqliteStore


@pytest.mark.parametrize(("setting", "level"), [("NORMAL", 1), ("FULL", 2)])
def test_the_database_is_in_wal_mode_with_the_chosen_durability(tmp_path: Path, setting: str, level: int) -> None:
    store = SqliteStore(tmp_path / "home" / "hatchway.db", synchronous=setting)
    try:
        conn = store.db.conn()
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == level
    finally:
        store.close()
    # WAL mode is a property of the file: a fresh connection sees it too
    with sqlite3.connect(tmp_path / "home" / "hatchway.db") as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert stat.S_IMODE((tmp_path / "home" / "hatchway.db").stat().st_mode) == 0o600
