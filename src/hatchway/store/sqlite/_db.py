"""The SQLite file every repository of the embedded default shares: connections, writes, schema.

One file in WAL mode, one connection per thread, autocommit with explicit ``BEGIN IMMEDIATE`` where
a primitive writes more than one row; writes that queue while another is under way are committed
together, in one transaction (group commit, see ``Database._write``). ``synchronous=NORMAL`` (the
default) keeps every committed transaction across a crash of the process; ``FULL`` also across a
power loss, at a cost per commit. Every conditional write is a single ``UPDATE ... WHERE`` on the
expected revision, so concurrent workers, even in separate processes, never both win.
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
from typing import Any, NoReturn, TypeVar, cast

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
    """One SQLite file: a connection per thread, this process's writers committed in groups, the schema."""

    def __init__(self, path: Path | str, synchronous: str = "NORMAL", busy_timeout_ms: int = 10_000) -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._all_lock = threading.Lock()
        # Writers of this process take turns here rather than in SQLite's busy handler, which
        # sleeps 1, 2, 5, 10 ms... between retries, and those that wait are committed together
        # (see _write); other processes still meet the busy timeout.
        self._mutex = threading.Lock()  # guards the two below, held for a few instructions only
        self._leading = False  # a write is under way: newcomers queue
        self._queue: list[_Write] = []
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
        except sqlite3.DatabaseError as exc:
            _raise(exc)

    def one(self, sql: str, args: tuple[Any, ...], build: Callable[[tuple[Any, ...]], T]) -> T | None:
        with self.guard():
            row = self.conn().execute(sql, args).fetchone()
        return build(row) if row else None

    def rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self.guard():
            return self.conn().execute(sql, args).fetchall()

    @property
    def waiting(self) -> int:
        """Writes queued behind the one being written (for tests and curious operators)."""
        return len(self._queue)

    def write(self, sql: str, args: tuple[Any, ...]) -> int:
        """One statement, committed before this returns; the number of rows it changed."""
        return self._write(lambda conn: conn.execute(sql, args).rowcount, statement=True)

    def write_row(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One statement with ``RETURNING``, committed before this returns; its first row."""
        # fetchall: a statement left unfinished would hold its transaction open past COMMIT
        return self._write(lambda conn: next(iter(conn.execute(sql, args).fetchall()), None), statement=True)

    def tx(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """``body(conn)`` as one atomic write, committed before this returns; rolled back if it raises.

        ``body`` may run on another thread, on that thread's connection (see :meth:`_write`): it
        must use only the connection it is given and must not call this database itself."""
        return self._write(body, statement=False)

    def _write(self, work: Callable[[sqlite3.Connection], T], statement: bool) -> T:
        """Group commit: the writer that finds no write under way leads; those that come meanwhile
        queue and wait. A leader takes every queued write and commits them in one transaction -
        one COMMIT (one fsync at ``synchronous=FULL``) for the lot - then answers each and hands
        the lead to the first writer queued since. A write that finds nobody ahead of it runs as
        before (autocommit, or ``BEGIN IMMEDIATE`` ... ``COMMIT``): no added work without
        contention. Nobody is answered before the COMMIT that holds their write returned."""
        me = _Write(work, statement)
        with self._mutex:
            if self._leading:
                self._queue.append(me)
            else:
                self._leading = me.lead = True
        if not me.lead:
            # waited for no longer than the busy timeout: while another process holds the
            # database, writers here must not queue behind each other's timeouts
            if not me.ready.acquire(timeout=self.busy_timeout_ms / 1000):
                with self._mutex:
                    if me in self._queue:  # not taken by a leader: nothing written
                        self._queue.remove(me)
                        raise Unavailable("the store is unavailable (database is locked)")
                me.ready.acquire()  # taken: its outcome (bounded by SQLite's own busy timeout) is near
            if not me.lead:
                return cast(T, me.outcome())
        with self._mutex:
            group = [me, *self._queue]
            self._queue.clear()
        try:
            self._commit(group)
        finally:
            with self._mutex:
                if self._queue:
                    heir = self._queue.pop(0)
                    heir.lead = True
                    heir.ready.release()
                else:
                    self._leading = False
            for write in group[1:]:
                write.ready.release()
        return cast(T, me.outcome())

    def _commit(self, group: list[_Write]) -> None:
        """Write ``group`` in one transaction and set each write's outcome (this never raises)."""
        alone = len(group) == 1
        conn: sqlite3.Connection | None = None
        try:
            conn = self.conn()
            if alone and group[0].statement:
                group[0].run(conn)  # in autocommit: its own transaction, as without a group
                return
            conn.execute("BEGIN IMMEDIATE")
            for write in group:
                # One statement is atomic by itself (SQLite undoes a failed one and the transaction
                # goes on); a block of several is undone alone through its savepoint.
                if write.statement or alone:
                    done = write.run(conn)
                else:
                    conn.execute("SAVEPOINT w")
                    done = write.run(conn)
                    if not done and conn.in_transaction:
                        conn.execute("ROLLBACK TO w")
                    if conn.in_transaction:
                        conn.execute("RELEASE w")
                if not conn.in_transaction:  # SQLite gave up the whole transaction (disk full, I/O)
                    raise write.error or sqlite3.OperationalError("the transaction was rolled back")
                if alone and not done:
                    conn.execute("ROLLBACK")
                    return
            conn.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 - whatever stopped the transaction fails all of it
            if conn is not None and conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            # the store's failure, whatever SQLite called it: even a constraint checked at COMMIT
            # is no caller's own conflict to report
            for write in group:
                write.error = _unavailable(exc) if isinstance(exc, sqlite3.Error) else exc

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


class _Write:
    """One caller's write: its work, then its outcome, set by whichever writer led its group."""

    __slots__ = ("error", "lead", "ready", "result", "statement", "work")

    def __init__(self, work: Callable[[sqlite3.Connection], Any], statement: bool) -> None:
        self.work = work
        self.statement = statement  # one statement, atomic by itself (else a block that needs a savepoint)
        self.ready = threading.Lock()  # released when answered or handed the lead (cheaper than an Event)
        self.ready.acquire()
        self.lead = False
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self, conn: sqlite3.Connection) -> bool:
        """Do the work; False if it raised (the error kept for its caller)."""
        try:
            self.result = self.work(conn)
        except BaseException as exc:  # noqa: BLE001 - its caller's to see, in its own thread
            self.error = exc
            return False
        return True

    def outcome(self) -> Any:
        if self.error is None:
            return self.result
        if isinstance(self.error, sqlite3.DatabaseError):
            _raise(self.error)
        raise self.error


def _raise(exc: sqlite3.DatabaseError) -> NoReturn:
    """SQLite's failures (locked, disk full, unreadable) as 503; a broken constraint as itself."""
    if isinstance(exc, sqlite3.IntegrityError):
        raise exc
    raise _unavailable(exc)


def _unavailable(exc: sqlite3.Error) -> Unavailable:
    failed = Unavailable(f"the store is unavailable ({_reason(exc)})")
    failed.__cause__ = exc
    return failed


def _reason(exc: sqlite3.Error) -> str:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "database is locked"
    if "full" in text:
        return "disk is full"
    if "readonly" in text or "read-only" in text:
        return "database is read-only"
    return "database error"
