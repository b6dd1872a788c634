"""Runs and their logs in SQLite (tables ``runs`` and ``logs``).

A run is a JSON copy (``data``) plus the columns its queries filter on. The claimable runs and the
leased ones are partial indexes (``runs_ready``, ``runs_leased``), as are the unfinished runs the
dashboard counts (``runs_active``), so they stay small however many runs have ended; the runs
remote engines hold are read as a range of ids (creation times), unfinished ones kept.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from hatchway.domain.runs import ActiveCount, LogEntry, Run, RunSummary, run_from_dict, run_id_floor, run_to_dict
from hatchway.store.runs import BaseRunRepo, Due
from hatchway.store.sqlite._db import Database, dumps


class SqliteRunRepo(BaseRunRepo):
    def __init__(self, db: Database) -> None:
        self.db = db

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
            dumps(run_to_dict(run)),
        )

    def _insert_run(self, run: Run) -> bool:
        return (
            self.db.write(
                "INSERT OR IGNORE INTO runs(project_id, environment, action_name, mode, status, external_user_id, "
                "available_at, lease_owner, lease_until, data, id, rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (*self._run_args(run), run.id),
            )
            == 1
        )

    def _get_run(self, run_id: str, project_id: str | None = None) -> tuple[Run, int] | None:
        return self.db.one("SELECT data, lease_until, rev FROM runs WHERE id = ?", (run_id,), lambda r: (_run(r), r[2]))

    def _replace_run(self, run: Run, expected_rev: int) -> tuple[bool, tuple[Run, int] | None]:
        written = self.db.write(_REPLACE, (*self._run_args(run), run.id, expected_rev))
        return written == 1, None  # a lost race is read again by the rules (as cheap as any read here)

    def _replace_run_with_logs(
        self, run: Run, expected_rev: int, entries: list[LogEntry]
    ) -> tuple[bool, tuple[Run, int] | None]:
        # one commit for an attempt's last log lines and its end; the lines stay if the run's
        # revision moved (the rules read it and try again, without them)
        def body(conn: sqlite3.Connection) -> int:
            self._insert_logs(conn, run.id, entries)  # numbered first: the run's os shows them
            return conn.execute(_REPLACE, (*self._run_args(run), run.id, expected_rev)).rowcount

        return self.db.tx(body) == 1, None

    def _runs(self, sql: str, args: tuple[Any, ...]) -> list[Run]:
        return [_run(row) for row in self.db.rows(sql.replace("SELECT data", "SELECT data, lease_until", 1), args)]

    def _list_runs(
        self, project_id: str, environment: str, before: str | None, limit: int, filters: dict[str, str]
    ) -> list[Run]:
        # a listed run comes without os (see BaseRunRepo.list_runs): SQLite drops it, in C and without
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
        return [_run(row) for row in self.db.rows(sql, tuple(args))]

    def _due_runs(self, due: Due, below: int, limit: int, after: str | None = None) -> list[Run]:
        if due is Due.READY:
            return self._runs(
                "SELECT data FROM runs WHERE status = 'ENQUEUED' AND mode = 'async' AND available_at <= ? "
                "ORDER BY available_at LIMIT ?",
                (below, limit),
            )
        if due is Due.EXPIRED:
            return self._runs(
                "SELECT data FROM runs WHERE status IN ('INPROGRESS', 'TERMINATING') AND lease_until < ? "
                "ORDER BY lease_until LIMIT ?",
                (below, limit),
            )
        return self._runs(
            "SELECT data FROM runs WHERE status IN ('ENQUEUED', 'INPROGRESS', 'TERMINATING') AND id < ? AND id > ? "
            "AND json_extract(data, '$.external_id') IS NOT NULL ORDER BY id LIMIT ?",
            (run_id_floor(below), after or "", limit),
        )

    takes_in_one_write = True

    def _take_ready(self, owner: str, until: int, now: int) -> tuple[Run, int] | None:
        # One statement finds the oldest ready run and applies claim_changes to its columns and its
        # JSON copy: no candidates read and parsed, none read again, no whole document written. SQLite
        # runs it under the write lock, so two claimers (threads or processes) never take one run.
        row = self.db.write_row(_TAKE_READY, (owner, until, owner, until, now, now))
        return (_run(row), row[2]) if row else None

    def _set_lease(self, run_id: str, owner: str, until: int) -> str | None:
        # The lease lives in its own columns (the JSON copy is refreshed on the next full write), so a
        # heartbeat is one small UPDATE. It moves the revision too: a full write prepared before the
        # heartbeat (the sweeper requeueing a lease it saw expire) must not undo the renewal.
        row = self.db.write_row(
            "UPDATE runs SET lease_until = ?, rev = rev + 1 WHERE id = ? AND lease_owner = ? "
            "AND status IN ('INPROGRESS', 'TERMINATING') RETURNING status",
            (until, run_id, owner),
        )
        return row[0] if row else None

    # ---- statistics ------------------------------------------------------------------------

    def _run_summaries(self, project_id: str, environment: str, since_ms: int, limit: int) -> list[RunSummary]:
        rows = self.db.rows(
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
        rows = self.db.rows(sql + " GROUP BY project_id, environment, mode, status ORDER BY 1, 2, 3, 4", args)
        return [ActiveCount(*row) for row in rows]

    # ---- logs ------------------------------------------------------------------------------

    def _append_logs(self, run_id: str, entries: list[LogEntry]) -> list[LogEntry]:
        self.db.tx(lambda conn: self._insert_logs(conn, run_id, entries))
        return entries

    @staticmethod
    def _insert_logs(conn: sqlite3.Connection, run_id: str, entries: list[LogEntry]) -> None:
        """Number ``entries`` after the run's last and insert them (inside the caller's transaction)."""
        last = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM logs WHERE run_id = ?", (run_id,)).fetchone()[0]
        for offset, entry in enumerate(entries, start=1):
            entry.seq = last + offset
        conn.executemany(
            "INSERT INTO logs(run_id, seq, k, ts, msg, err) VALUES (?, ?, ?, ?, ?, ?)",
            [(run_id, e.seq, e.k, e.ts, e.msg, None if e.err is None else dumps(e.err)) for e in entries],
        )

    def _read_logs(self, run_id: str, after: int, limit: int) -> list[LogEntry]:
        rows = self.db.rows(
            "SELECT seq, k, ts, msg, err FROM logs WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (run_id, after, limit),
        )
        return [
            LogEntry(seq=r[0], k=r[1], ts=r[2], msg=r[3], err=None if r[4] is None else json.loads(r[4])) for r in rows
        ]


#: a whole run written over the revision the writer read (compare-and-set)
_REPLACE = (
    "UPDATE runs SET project_id = ?, environment = ?, action_name = ?, mode = ?, status = ?, "
    "external_user_id = ?, available_at = ?, lease_owner = ?, lease_until = ?, data = ?, rev = rev + 1 "
    "WHERE id = ? AND rev = ?"
)

#: the claim of SqliteRunRepo._take_ready: the rules' claim_changes, in SQL
_TAKE_READY = (
    "UPDATE runs SET status = 'INPROGRESS', lease_owner = ?, lease_until = ?, rev = rev + 1, "
    "data = json_set(data, '$.status', 'INPROGRESS', '$.attempt', json_extract(data, '$.attempt') + 1, "
    "'$.lease_owner', ?, '$.lease_until', ?, '$.status_reason', NULL, "
    "'$.started_at', COALESCE(NULLIF(json_extract(data, '$.started_at'), 0), ?)) "
    "WHERE id = (SELECT id FROM runs WHERE status = 'ENQUEUED' AND mode = 'async' AND available_at <= ? "
    "AND json_extract(data, '$.external_id') IS NULL ORDER BY available_at LIMIT 1) AND status = 'ENQUEUED' "
    "RETURNING data, lease_until, rev"
)


def _run(row: tuple[Any, ...]) -> Run:
    """A run from its JSON copy; the lease column wins, since heartbeats update only the column."""
    run = run_from_dict(json.loads(row[0]))
    run.lease_until = row[1]
    return run
