"""SQLite primitives for :class:`~hatchway.store.runs.BaseStore`.

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

from hatchway.domain.actions import ActionHead, ActionRecord
from hatchway.domain.pipelines.records import Execution, PipelineHead, PipelineRecord
from hatchway.domain.records import Document, IdempotencyRecord
from hatchway.domain.runs import ActiveCount, LogEntry, Run, RunSummary, run_from_dict, run_id_floor, run_to_dict
from hatchway.domain.tenants import Project, TokenRecord
from hatchway.errors import Unavailable
from hatchway.store.runs import BaseStore

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


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class SqliteStore(BaseStore):
    """The embedded default's store: a single SQLite file in WAL mode."""

    def __init__(self, path: Path | str, synchronous: str = "NORMAL", busy_timeout_ms: int = 10_000) -> None:
        self.path = str(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
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
        with self._guard():
            self._conn().executescript(SCHEMA + PIPELINE_SCHEMA)

    # ---- connection handling ---------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = OFF")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _guard(self) -> Iterator[None]:
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
    def _turn(self) -> Iterator[None]:
        """This process's turn to write, waited for no longer than the busy timeout: while another
        process holds the database, writers here must not queue behind each other's timeouts."""
        if not self._writing.acquire(timeout=self.busy_timeout_ms / 1000):
            raise Unavailable("the store is unavailable (database is locked)")
        try:
            yield
        finally:
            self._writing.release()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._turn(), self._guard():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _one(self, sql: str, args: tuple[Any, ...], build: Callable[[tuple[Any, ...]], T]) -> T | None:
        with self._guard():
            row = self._conn().execute(sql, args).fetchone()
        return build(row) if row else None

    def _all_rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._guard():
            return self._conn().execute(sql, args).fetchall()

    def _write(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._turn(), self._guard():
            return self._conn().execute(sql, args).rowcount

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()

    def ping(self) -> None:
        self._one("SELECT 1", (), lambda row: row)

    # ---- projects and tokens ---------------------------------------------------------------

    def _put_project(self, project: Project) -> bool:
        return (
            self._write(
                "INSERT OR IGNORE INTO projects(id, name, created_at) VALUES (?, ?, ?)",
                (project.id, project.name, project.created_at),
            )
            == 1
        )

    def _get_project(self, project_id: str) -> Project | None:
        return self._one("SELECT id, name, created_at FROM projects WHERE id = ?", (project_id,), lambda r: Project(*r))

    def _put_token(self, token: TokenRecord) -> None:
        self._write(
            "INSERT OR REPLACE INTO tokens(id, project_id, secret_hash, scopes, environments, created_at, "
            "expires_at, last_used_at, name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                token.id,
                token.project_id,
                token.secret_hash,
                _dumps(token.scopes),
                None if token.environments is None else _dumps(token.environments),
                token.created_at,
                token.expires_at,
                token.last_used_at,
                token.name,
            ),
        )

    @staticmethod
    def _token(row: tuple[Any, ...]) -> TokenRecord:
        return TokenRecord(
            id=row[0],
            project_id=row[1],
            secret_hash=row[2],
            scopes=json.loads(row[3]),
            environments=None if row[4] is None else json.loads(row[4]),
            created_at=row[5],
            expires_at=row[6],
            last_used_at=row[7],
            name=row[8],
        )

    _TOKEN_COLS = "id, project_id, secret_hash, scopes, environments, created_at, expires_at, last_used_at, name"  # noqa: S105

    def _get_token(self, token_id: str) -> TokenRecord | None:
        return self._one(f"SELECT {self._TOKEN_COLS} FROM tokens WHERE id = ?", (token_id,), self._token)

    def _list_tokens(self, project_id: str) -> list[TokenRecord]:
        rows = self._all_rows(
            f"SELECT {self._TOKEN_COLS} FROM tokens WHERE project_id = ? ORDER BY created_at, id", (project_id,)
        )
        return [self._token(row) for row in rows]

    def _delete_token(self, token_id: str) -> bool:
        return self._write("DELETE FROM tokens WHERE id = ?", (token_id,)) == 1

    def _touch_token(self, token_id: str, when: int) -> None:
        self._write("UPDATE tokens SET last_used_at = ? WHERE id = ?", (when, token_id))

    # ---- actions ---------------------------------------------------------------------------

    @staticmethod
    def _head(row: tuple[Any, ...]) -> ActionHead:
        return ActionHead(row[0], row[1], row[2], row[3], json.loads(row[4]), bool(row[5]))

    @staticmethod
    def _version(row: tuple[Any, ...]) -> ActionRecord:
        return ActionRecord(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]))

    _VERSION_COLS = "project_id, environment, name, version, digest, created_at, spec"

    def _get_head(self, project_id: str, environment: str, name: str) -> ActionHead | None:
        # the latest version comes along in the same statement: resolving an action is one read
        return self._one(
            "SELECT h.project_id, h.environment, h.name, h.latest_version, h.tags, h.deleted, "
            "v.version, v.digest, v.created_at, v.spec FROM action_heads h LEFT JOIN action_versions v "
            "ON v.project_id = h.project_id AND v.environment = h.environment AND v.name = h.name "
            "AND v.version = h.latest_version WHERE h.project_id = ? AND h.environment = ? AND h.name = ?",
            (project_id, environment, name),
            self._head_with_latest,
        )

    @classmethod
    def _head_with_latest(cls, row: tuple[Any, ...]) -> ActionHead:
        head = cls._head(row)
        if row[6] is not None:
            head.record = cls._version((*row[:3], *row[6:]))
        return head

    def _put_version(self, record: ActionRecord, head: ActionHead, expected_latest: int | None) -> bool:
        with self._tx() as conn:
            if expected_latest is None:
                moved = conn.execute(
                    "INSERT OR IGNORE INTO action_heads(project_id, environment, name, latest_version, tags, "
                    "deleted) VALUES (?, ?, ?, ?, ?, 0)",
                    (head.project_id, head.environment, head.name, head.latest_version, _dumps(head.tags)),
                ).rowcount
            else:
                moved = conn.execute(
                    "UPDATE action_heads SET latest_version = ?, tags = ?, deleted = 0 "
                    "WHERE project_id = ? AND environment = ? AND name = ? AND latest_version = ?",
                    (
                        head.latest_version,
                        _dumps(head.tags),
                        head.project_id,
                        head.environment,
                        head.name,
                        expected_latest,
                    ),
                ).rowcount
            if moved != 1:
                return False
            conn.execute(
                f"INSERT INTO action_versions({self._VERSION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.project_id,
                    record.environment,
                    record.name,
                    record.version,
                    record.digest,
                    record.created_at,
                    _dumps(record.spec),
                ),
            )
        return True

    def _set_head_deleted(self, project_id: str, environment: str, name: str) -> bool:
        return (
            self._write(
                "UPDATE action_heads SET deleted = 1 WHERE project_id = ? AND environment = ? AND name = ? "
                "AND deleted = 0",
                (project_id, environment, name),
            )
            == 1
        )

    def _get_version(self, project_id: str, environment: str, name: str, version: int) -> ActionRecord | None:
        return self._one(
            f"SELECT {self._VERSION_COLS} FROM action_versions "
            "WHERE project_id = ? AND environment = ? AND name = ? AND version = ?",
            (project_id, environment, name, version),
            self._version,
        )

    def _find_version_by_digest(self, project_id: str, environment: str, name: str, digest: str) -> ActionRecord | None:
        return self._one(
            f"SELECT {self._VERSION_COLS} FROM action_versions "
            "WHERE project_id = ? AND environment = ? AND name = ? AND digest = ? ORDER BY version DESC LIMIT 1",
            (project_id, environment, name, digest),
            self._version,
        )

    def _list_heads(
        self, project_id: str, environment: str, after: str | None, limit: int, tag: str | None
    ) -> list[ActionHead]:
        sql = (
            "SELECT project_id, environment, name, latest_version, tags, deleted FROM action_heads "
            "WHERE project_id = ? AND environment = ? AND deleted = 0 AND name > ?"
        )
        args: list[Any] = [project_id, environment, after or ""]
        if tag:
            sql += " AND EXISTS (SELECT 1 FROM json_each(action_heads.tags) WHERE json_each.value = ?)"
            args.append(tag)
        sql += " ORDER BY name LIMIT ?"
        args.append(limit)
        return [self._head(row) for row in self._all_rows(sql, tuple(args))]

    def _list_versions(
        self, project_id: str, environment: str, name: str, before: int | None, limit: int
    ) -> list[ActionRecord]:
        rows = self._all_rows(
            f"SELECT {self._VERSION_COLS} FROM action_versions "
            "WHERE project_id = ? AND environment = ? AND name = ? AND version < ? ORDER BY version DESC LIMIT ?",
            (project_id, environment, name, before if before is not None else 2**62, limit),
        )
        return [self._version(row) for row in rows]

    # ---- runs ------------------------------------------------------------------------------

    @staticmethod
    def _run_args(run: Run) -> tuple[Any, ...]:
        return (
            run.project_id,
            run.environment,
            run.action_name,
            run.mode.value,
            run.status.value,
            run.external_user_id,
            run.available_at,
            run.lease_owner,
            run.lease_until,
            _dumps(run_to_dict(run)),
        )

    def _insert_run(self, run: Run) -> bool:
        return (
            self._write(
                "INSERT OR IGNORE INTO runs(project_id, environment, action_name, mode, status, external_user_id, "
                "available_at, lease_owner, lease_until, data, id, rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (*self._run_args(run), run.id),
            )
            == 1
        )

    def _get_run(self, run_id: str) -> tuple[Run, int] | None:
        return self._one("SELECT data, lease_until, rev FROM runs WHERE id = ?", (run_id,), lambda r: (_run(r), r[2]))

    def _replace_run(self, run: Run, expected_rev: int) -> bool:
        return (
            self._write(
                "UPDATE runs SET project_id = ?, environment = ?, action_name = ?, mode = ?, status = ?, "
                "external_user_id = ?, available_at = ?, lease_owner = ?, lease_until = ?, data = ?, rev = rev + 1 "
                "WHERE id = ? AND rev = ?",
                (*self._run_args(run), run.id, expected_rev),
            )
            == 1
        )

    def _runs(self, sql: str, args: tuple[Any, ...]) -> list[Run]:
        return [_run(row) for row in self._all_rows(sql.replace("SELECT data", "SELECT data, lease_until", 1), args)]

    def _list_runs(
        self, project_id: str, environment: str, before: str | None, limit: int, filters: dict[str, str]
    ) -> list[Run]:
        # a listed run comes without os (see BaseStore.list_runs): SQLite drops it, in C and without
        # the GIL, before Python parses the rest - a log's head and tail are most of a record
        sql = (
            "SELECT json_remove(data, '$.os'), lease_until FROM runs "
            "WHERE project_id = ? AND environment = ? AND id < ?"
        )
        args: list[Any] = [project_id, environment, before or "run_~"]
        for key, column in (("action", "action_name"), ("status", "status"), ("external_user_id", "external_user_id")):
            if key in filters:
                sql += f" AND {column} = ?"
                args.append(filters[key])
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [_run(row) for row in self._all_rows(sql, tuple(args))]

    def _ready_runs(self, now: int, limit: int) -> list[Run]:
        return self._runs(
            "SELECT data FROM runs WHERE status = 'ENQUEUED' AND mode = 'async' AND available_at <= ? "
            "ORDER BY available_at LIMIT ?",
            (now, limit),
        )

    def _expired_leases(self, now: int, limit: int) -> list[Run]:
        return self._runs(
            "SELECT data FROM runs WHERE status IN ('INPROGRESS', 'TERMINATING') AND lease_until < ? "
            "ORDER BY lease_until LIMIT ?",
            (now, limit),
        )

    def _set_lease(self, run_id: str, owner: str, until: int) -> str | None:
        # The lease lives in its own columns (the JSON copy is refreshed on the next full write), so a
        # heartbeat is one small UPDATE. It moves the revision too: a full write prepared before the
        # heartbeat (the sweeper requeueing a lease it saw expire) must not undo the renewal.
        with self._turn(), self._guard():
            row = (
                self._conn()
                .execute(
                    "UPDATE runs SET lease_until = ?, rev = rev + 1 WHERE id = ? AND lease_owner = ? "
                    "AND status IN ('INPROGRESS', 'TERMINATING') RETURNING status",
                    (until, run_id, owner),
                )
                .fetchone()
            )
        return row[0] if row else None

    def _remote_runs(self, created_before: int, limit: int, after: str | None = None) -> list[Run]:
        return self._runs(
            "SELECT data FROM runs WHERE status IN ('ENQUEUED', 'INPROGRESS', 'TERMINATING') AND id < ? AND id > ? "
            "AND json_extract(data, '$.external_id') IS NOT NULL ORDER BY id LIMIT ?",
            (run_id_floor(created_before), after or "", limit),
        )

    # ---- statistics ------------------------------------------------------------------------

    def _run_summaries(self, project_id: str, environment: str, since_ms: int, limit: int) -> list[RunSummary]:
        rows = self._all_rows(
            "SELECT action_name, json_extract(data, '$.invoked'), mode, status, json_extract(data, '$.created_at'), "
            "json_extract(data, '$.started_at'), json_extract(data, '$.finished_at'), "
            "json_extract(data, '$.duration_ms') FROM runs WHERE project_id = ? AND environment = ? AND id >= ? "
            "AND json_extract(data, '$.created_at') >= ? ORDER BY id DESC LIMIT ?",
            (project_id, environment, run_id_floor(since_ms), since_ms, limit),
        )
        return [RunSummary(*row) for row in rows]

    def _active_counts(self, project_id: str | None, cap: int) -> list[ActiveCount]:
        sql = (
            "SELECT project_id, environment, mode, status, COUNT(*) FROM runs "
            "WHERE status IN ('ENQUEUED', 'INPROGRESS', 'TERMINATING')"
        )
        args: tuple[Any, ...] = ()
        if project_id is not None:
            sql += " AND project_id = ?"
            args = (project_id,)
        rows = self._all_rows(sql + " GROUP BY project_id, environment, mode, status ORDER BY 1, 2, 3, 4", args)
        return [ActiveCount(*row) for row in rows]

    # ---- logs ------------------------------------------------------------------------------

    def _append_logs(self, run_id: str, entries: list[LogEntry]) -> list[LogEntry]:
        with self._tx() as conn:
            last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM logs WHERE run_id = ?", (run_id,)).fetchone()[0]
            for offset, entry in enumerate(entries, start=1):
                entry.seq = last + offset
            conn.executemany(
                "INSERT INTO logs(run_id, seq, k, ts, msg, err) VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, e.seq, e.k, e.ts, e.msg, None if e.err is None else _dumps(e.err)) for e in entries],
            )
        return entries

    def _read_logs(self, run_id: str, after: int, limit: int) -> list[LogEntry]:
        rows = self._all_rows(
            "SELECT seq, k, ts, msg, err FROM logs WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (run_id, after, limit),
        )
        return [
            LogEntry(seq=r[0], k=r[1], ts=r[2], msg=r[3], err=None if r[4] is None else json.loads(r[4])) for r in rows
        ]

    # ---- documents -------------------------------------------------------------------------

    _DOCUMENT_COLS = "project_id, environment, kind, name, body, updated_at, expires_at"

    @staticmethod
    def _document(row: tuple[Any, ...]) -> Document:
        return Document(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6])

    def _put_document(self, document: Document) -> None:
        self._write(
            f"INSERT OR REPLACE INTO documents({self._DOCUMENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                document.project_id,
                document.environment,
                document.kind,
                document.name,
                _dumps(document.body),
                document.updated_at,
                document.expires_at,
            ),
        )

    def _get_document(self, project_id: str, environment: str, kind: str, name: str) -> Document | None:
        return self._one(
            f"SELECT {self._DOCUMENT_COLS} FROM documents "
            "WHERE project_id = ? AND environment = ? AND kind = ? AND name = ?",
            (project_id, environment, kind, name),
            self._document,
        )

    def _delete_document(self, project_id: str, environment: str, kind: str, name: str) -> bool:
        return (
            self._write(
                "DELETE FROM documents WHERE project_id = ? AND environment = ? AND kind = ? AND name = ?",
                (project_id, environment, kind, name),
            )
            == 1
        )

    def _list_documents(
        self, project_id: str, environment: str, kind: str, after: str | None, limit: int
    ) -> list[Document]:
        rows = self._all_rows(
            f"SELECT {self._DOCUMENT_COLS} FROM documents "
            "WHERE project_id = ? AND environment = ? AND kind = ? AND name > ? ORDER BY name LIMIT ?",
            (project_id, environment, kind, after or "", limit),
        )
        return [self._document(row) for row in rows]

    # ---- idempotency -----------------------------------------------------------------------

    @staticmethod
    def _idem(row: tuple[Any, ...]) -> IdempotencyRecord:
        return IdempotencyRecord(
            scope=row[0],
            request_hash=row[1],
            run_id=row[2],
            status=row[3],
            expires_at=row[4],
            response=None if row[5] is None else json.loads(row[5]),
            response_code=row[6],
        )

    def _get_idempotency(self, scope: str) -> IdempotencyRecord | None:
        return self._one(
            "SELECT scope, request_hash, run_id, status, expires_at, response, response_code FROM idempotency "
            "WHERE scope = ?",
            (scope,),
            self._idem,
        )

    def _put_idempotency(self, record: IdempotencyRecord, replace_expired_before: int | None) -> bool:
        if replace_expired_before is None:
            return (
                self._write(
                    "INSERT OR IGNORE INTO idempotency(scope, request_hash, run_id, status, expires_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (record.scope, record.request_hash, record.run_id, record.status, record.expires_at),
                )
                == 1
            )
        return (
            self._write(
                "UPDATE idempotency SET expires_at = ? WHERE scope = ? AND status = 'INPROGRESS' AND expires_at < ?",
                (record.expires_at, record.scope, replace_expired_before),
            )
            == 1
        )

    def _complete_idempotency(self, record: IdempotencyRecord) -> None:
        self._write(
            "UPDATE idempotency SET status = ?, expires_at = ?, response = ?, response_code = ? WHERE scope = ?",
            (record.status, record.expires_at, _dumps(record.response), record.response_code, record.scope),
        )

    def _delete_idempotency(self, scope: str) -> None:
        self._write("DELETE FROM idempotency WHERE scope = ?", (scope,))

    # ---- pipelines -------------------------------------------------------------------------

    _PIPELINE_COLS = "project_id, environment, name, version, digest, created_at, spec, engine_ref"

    @staticmethod
    def _pipeline(row: tuple[Any, ...]) -> PipelineRecord:
        return PipelineRecord(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), row[7])

    @staticmethod
    def _pipeline_head(row: tuple[Any, ...]) -> PipelineHead:
        return PipelineHead(row[0], row[1], row[2], row[3], bool(row[4]))

    def _get_pipeline_head(self, project_id: str, environment: str, name: str) -> PipelineHead | None:
        return self._one(
            "SELECT project_id, environment, name, latest_version, deleted FROM pipeline_heads "
            "WHERE project_id = ? AND environment = ? AND name = ?",
            (project_id, environment, name),
            self._pipeline_head,
        )

    def _put_pipeline_version(self, record: PipelineRecord, head: PipelineHead, expected_latest: int | None) -> bool:
        with self._tx() as conn:
            if expected_latest is None:
                sql = (
                    "INSERT OR IGNORE INTO pipeline_heads(latest_version, project_id, environment, name, deleted) "
                    "VALUES (?, ?, ?, ?, 0)"
                )
                args: tuple[Any, ...] = (head.latest_version, head.project_id, head.environment, head.name)
            else:
                sql = (
                    "UPDATE pipeline_heads SET latest_version = ?, deleted = 0 "
                    "WHERE project_id = ? AND environment = ? AND name = ? AND latest_version = ?"
                )
                args = (head.latest_version, head.project_id, head.environment, head.name, expected_latest)
            if conn.execute(sql, args).rowcount != 1:
                return False
            conn.execute(
                f"INSERT INTO pipeline_versions({self._PIPELINE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.project_id, record.environment, record.name, record.version, record.digest,
                    record.created_at, _dumps(record.spec), record.engine_ref,
                ),
            )  # fmt: skip
        return True

    def _get_pipeline_version(
        self, project_id: str, environment: str, name: str, version: int
    ) -> PipelineRecord | None:
        return self._one(
            f"SELECT {self._PIPELINE_COLS} FROM pipeline_versions "
            "WHERE project_id = ? AND environment = ? AND name = ? AND version = ?",
            (project_id, environment, name, version),
            self._pipeline,
        )

    def _list_pipeline_heads(
        self, project_id: str, environment: str, after: str | None, limit: int
    ) -> list[PipelineHead]:
        rows = self._all_rows(
            "SELECT project_id, environment, name, latest_version, deleted FROM pipeline_heads "
            "WHERE project_id = ? AND environment = ? AND deleted = 0 AND name > ? ORDER BY name LIMIT ?",
            (project_id, environment, after or "", limit),
        )
        return [self._pipeline_head(row) for row in rows]

    def _set_pipeline_head_deleted(self, project_id: str, environment: str, name: str) -> bool:
        return (
            self._write(
                "UPDATE pipeline_heads SET deleted = 1 WHERE project_id = ? AND environment = ? AND name = ? "
                "AND deleted = 0",
                (project_id, environment, name),
            )
            == 1
        )

    @staticmethod
    def _execution_args(execution: Execution) -> tuple[Any, ...]:
        return (
            execution.project_id,
            execution.environment,
            execution.pipeline,
            execution.status.value,
            execution.engine,
            0 if execution.is_terminal else 1,
            _dumps(execution.to_dict()),
        )

    def _insert_execution(self, execution: Execution) -> bool:
        return (
            self._write(
                "INSERT OR IGNORE INTO executions(project_id, environment, pipeline, status, engine, is_active, data, "
                "id, rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (*self._execution_args(execution), execution.id),
            )
            == 1
        )

    def _get_execution(self, execution_id: str) -> tuple[Execution, int] | None:
        return self._one(
            "SELECT data, rev FROM executions WHERE id = ?",
            (execution_id,),
            lambda r: (Execution.from_dict(json.loads(r[0])), r[1]),
        )

    def _replace_execution(self, execution: Execution, expected_rev: int) -> bool:
        return (
            self._write(
                "UPDATE executions SET project_id = ?, environment = ?, pipeline = ?, status = ?, engine = ?, "
                "is_active = ?, data = ?, rev = rev + 1 WHERE id = ? AND rev = ?",
                (*self._execution_args(execution), execution.id, expected_rev),
            )
            == 1
        )

    def _list_executions(
        self, project_id: str, environment: str, pipeline: str | None, before: str | None, limit: int,
        status: str | None,
    ) -> list[Execution]:  # fmt: skip
        sql = "SELECT data FROM executions WHERE project_id = ? AND environment = ? AND id < ?"
        args: list[Any] = [project_id, environment, before or "pex_~"]
        if pipeline is not None:
            sql += " AND pipeline = ?"
            args.append(pipeline)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [Execution.from_dict(json.loads(row[0])) for row in self._all_rows(sql, tuple(args))]

    def _active_executions(self, engine: str, limit: int) -> list[Execution]:
        rows = self._all_rows(
            "SELECT data FROM executions WHERE engine = ? AND is_active = 1 ORDER BY id LIMIT ?", (engine, limit)
        )
        return [Execution.from_dict(json.loads(row[0])) for row in rows]


def _run(row: tuple[Any, ...]) -> Run:
    """A run from its JSON copy; the lease column wins, since heartbeats update only the column."""
    run = run_from_dict(json.loads(row[0]))
    run.lease_until = row[1]
    return run


def _reason(exc: sqlite3.Error) -> str:
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return "database is locked"
    if "full" in text:
        return "disk is full"
    if "readonly" in text or "read-only" in text:
        return "database is read-only"
    return "database error"
