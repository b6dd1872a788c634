"""The SQLite store's file: WAL mode, the durability setting, and a private file."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
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


_CLOSE_UNDER_WRITERS = """
import os, sys, threading
from hatchway.store.sqlite._db import Database

home = sys.argv[1]
for round in range(60):
    db = Database(os.path.join(home, f"round{round}.db"))
    stop = threading.Event()
    wrote = threading.Semaphore(0)

    def write() -> None:
        while not stop.is_set():
            try:
                db.write("INSERT OR REPLACE INTO projects VALUES (?, ?, ?)", ("p", "n" * 1000, 1))
                db.rows("SELECT * FROM projects", ())
            except Exception:
                pass
            wrote.release()

    writers = [threading.Thread(target=write) for _ in range(3)]
    for writer in writers:
        writer.start()
    for _ in range(3):
        wrote.acquire()
    db.close()
    stop.set()
    for writer in writers:
        writer.join()
print("closed", round + 1)
"""


def test_closing_the_database_under_running_writers_does_not_crash_the_process(tmp_path: Path) -> None:
    # a worker thread can still be finishing a write when the gateway shuts its store; closing that
    # thread's connection under it used to free memory the statement was reading (SIGSEGV)
    done = subprocess.run(
        [sys.executable, "-c", _CLOSE_UNDER_WRITERS, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "closed 60"
