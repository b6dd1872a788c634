"""Huey with SQLite storage, as the peer benchmarks use it (client and ``huey_consumer``).

The queue is one SQLite file in WAL mode. Huey leaves ``synchronous`` at SQLite's compiled-in
default (FULL in Debian's build: an fsync per commit) unless told ``fsync=True/False`` (FULL or
OFF); ``synchronous="NORMAL"`` here sets what hatchway's store uses, so that both sides promise the
same durability. ``huey_consumer bench.stacks.huey_app.huey`` serves the file named by
``BENCH_HUEY_DB``.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from huey import Huey
from huey.storage import SqliteStorage

from bench.stacks.work import true_and_mark


def make(path: str, synchronous: str | None = "NORMAL") -> tuple[Huey, Any]:
    """A Huey on the SQLite file ``path`` and its ``true_and_mark`` task; ``synchronous=None``
    keeps Huey's default."""

    class Storage(SqliteStorage):  # type: ignore[misc]
        def _create_connection(self) -> sqlite3.Connection:
            conn: sqlite3.Connection = super()._create_connection()
            if synchronous is not None:
                conn.execute(f"PRAGMA synchronous = {synchronous}")
            return conn

    huey = Huey("bench", storage_class=Storage, filename=path)
    return huey, huey.task()(true_and_mark)


huey, task = make(os.environ["BENCH_HUEY_DB"]) if "BENCH_HUEY_DB" in os.environ else (None, None)
