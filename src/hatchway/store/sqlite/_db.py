"""The SQLite file every repository of the embedded default shares: connections, writes, schema.

One file in WAL mode, one connection per thread, autocommit with explicit ``BEGIN IMMEDIATE``
where a primitive writes more than one row. ``synchronous=NORMAL`` (the default) keeps every
committed transaction across a crash of the process; ``FULL`` also across a power loss, at a cost
per commit. Every conditional write is a single ``UPDATE ... WHERE`` on the expected revision, so
concurrent workers, even in separate processes, never both win.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from hatchway.errors import Unavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, secret_hash TEXT NOT NULL, scopes TEXT NOT NULL,
    environments TEXT, created_at INTEGER NOT NULL, expires_at INTEGER, last_used_at INTEGER, name TEXT
);
CREATE INDEX IF NOT EXISTS tokens_project ON tokens(project_id);
CREATE TABLE IF NOT EXISTS action_heads (
    project_id TEXT NOT NULL, environment TEXT NOT NULL, name TEXT NOT NULL,
    latest_version INTEGER NOT NULL, tags TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, environment, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS action_versions (
    project_id TEXT NOT NULL, environment TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
    digest TEXT NOT NULL, created_at INTEGER NOT NULL, spec TEXT NOT NULL,
    PRIMARY KEY (project_id, environment, name, version)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS action_versions_digest ON action_versions(project_id, environment, name, digest);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, environment TEXT NOT NULL, action_name TEXT NOT NULL,
    mode TEXT NOT NULL, status TEXT NOT NULL, external_user_id TEXT, available_at INTEGER NOT NULL,
    lease_owner TEXT, lease_until INTEGER, rev INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_tenant ON runs(project_id, environment, id);
CREATE INDEX IF NOT EXISTS runs_ready ON runs(available_at) WHERE status = 'ENQUEUED' AND mode = 'async';
CREATE INDEX IF NOT EXISTS runs_leased ON runs(lease_until) WHERE status IN ('INPROGRESS', 'TERMINATING');
CREATE INDEX IF NOT EXISTS runs_active ON runs(project_id, environment, status)
    WHERE status IN ('ENQUEUED', 'INPROGRESS', 'TERMINATING');
CREATE TABLE IF NOT EXISTS logs (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, k TEXT NOT NULL, ts INTEGER NOT NULL, msg TEXT NOT NULL,
    err TEXT, PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS documents (
    project_id TEXT NOT NULL, environment TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
    body TEXT NOT NULL, updated_at INTEGER NOT NULL, expires_at INTEGER,
    PRIMARY KEY (project_id, environment, kind, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT PRIMARY KEY, request_hash TEXT NOT NULL, run_id TEXT NOT NULL, status TEXT NOT NULL,
    expires_at INTEGER NOT NULL, response TEXT, response_code INTEGER
) WITHOUT ROWID;
"""

#: pipeline definitions (versions behind a head, like actions) and executions (whole records + revision)
PIPELINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS pipeline_heads (
    project_id TEXT NOT NULL, environment TEXT NOT NULL, name TEXT NOT NULL,
    latest_version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project_id, environment, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pipeline_versions (
    project_id TEXT NOT NULL, environment TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,
    digest TEXT NOT NULL, created_at INTEGER NOT NULL, spec TEXT NOT NULL, engine_ref TEXT,
    PRIMARY KEY (project_id, environment, name, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, environment TEXT NOT NULL, pipeline TEXT NOT NULL,
    status TEXT NOT NULL, engine TEXT NOT NULL, is_active INTEGER NOT NULL, rev INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_pipeline ON executions(project_id, environment, pipeline, id);
CREATE INDEX IF NOT EXISTS executions_by_tenant ON executions(project_id, environment, id);
CREATE INDEX IF NOT EXISTS executions_active ON executions(engine, id) WHERE is_active = 1;
"""


T = TypeVar("T")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Database:
    """One SQLite file: a connection per thread, this process's writers taking turns, the schema."""

    def __init__(self, path: Path | str, synchronous: str = "NORMAL", busy_timeout_ms: int = 10_000) -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._all_lock = threading.Lock()
        # Writers of this process take turns here rather than in SQLite's busy handler, which
        # sleeps 1, 2, 5, 10 ms... between retries; other processes still meet the busy timeout.
        self._writing = threading.Lock()
        if self.path != ":memory:":
            # private to the gateway's user: the database holds tokens' hashes and ciphertexts, and
            # SQLite gives its -wal and -shm files the database file's mode
            Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        with self.guard():
            self.conn().executescript(SCHEMA + PIPELINE_SCHEMA)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = OFF")
            self._local.conn = conn
            with self._all_lock:
                self._all.append((threading.current_thread(), conn))
        return conn

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Map SQLite's operational failures (locked, disk full, unreadable) to 503."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"the store is unavailable ({_reason(exc)})") from exc
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.IntegrityError):
                raise
            raise Unavailable(f"the store is unavailable ({_reason(exc)})") from exc

    @contextmanager
    def turn(self) -> Iterator[None]:
        """This process's turn to write, waited for no longer than the busy timeout: while another
        process holds the database, writers here must not queue behind each other's timeouts."""
        if not self._writing.acquire(timeout=self.busy_timeout_ms / 1000):
            raise Unavailable("the store is unavailable (database is locked)")
        try:
            yield
        finally:
            self._writing.release()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``), rolled back if the block raises."""
        conn = self.conn()
        with self.turn(), self.guard():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def one(self, sql: str, args: tuple[Any, ...], build: Callable[[tuple[Any, ...]], T]) -> T | None:
        with self.guard():
            row = self.conn().execute(sql, args).fetchone()
        return build(row) if row else None

    def rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self.guard():
            return self.conn().execute(sql, args).fetchall()

    def write(self, sql: str, args: tuple[Any, ...]) -> int:
        """One statement in autocommit; the number of rows it changed."""
        with self.turn(), self.guard():
            return self.conn().execute(sql, args).rowcount

    def close(self) -> None:
        """Close this thread's connection and those of threads that have ended. A connection of a
        thread still running is only let go: closing it under a statement that thread is stepping
        through frees memory the statement still reads (a crash, not an error); that thread holds
        its own reference while it executes, and the connection closes when the last one goes."""
        me = threading.current_thread()
        with self._all_lock:
            for thread, conn in self._all:
                if thread is me or not thread.is_alive():
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()
            self._all.clear()
        self._local = threading.local()

    def ping(self) -> None:
        self.one("SELECT 1", (), lambda row: row)


def _reason(exc: sqlite3.Error) -> str:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "database is locked"
    if "full" in text:
        return "disk is full"
    if "readonly" in text or "read-only" in text:
        return "database is read-only"
    return "database error"
