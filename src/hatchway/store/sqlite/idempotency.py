"""Idempotency keys in SQLite (table ``idempotency``)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from hatchway.domain.records import IdempotencyRecord
from hatchway.store.idempotency import BaseIdempotencyRepo
from hatchway.store.sqlite._db import Database, dumps

_COLUMNS = "scope, request_hash, run_id, status, expires_at, response, response_code"


class SqliteIdempotencyRepo(BaseIdempotencyRepo):
    def __init__(self, db: Database) -> None:
        self.db = db

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
        return self.db.one(f"SELECT {_COLUMNS} FROM idempotency WHERE scope = ?", (scope,), self._idem)

    def _put_idempotency(
        self, record: IdempotencyRecord, replace_expired_before: int | None
    ) -> tuple[bool, IdempotencyRecord | None]:
        # the write and, when it fails, the read of the record in the way: one transaction
        def body(conn: sqlite3.Connection) -> tuple[bool, tuple[Any, ...] | None]:
            if replace_expired_before is None:
                written = conn.execute(
                    "INSERT OR IGNORE INTO idempotency(scope, request_hash, run_id, status, expires_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (record.scope, record.request_hash, record.run_id, record.status, record.expires_at),
                ).rowcount
            else:
                written = conn.execute(
                    "UPDATE idempotency SET expires_at = ? WHERE scope = ? AND status = 'INPROGRESS' "
                    "AND expires_at < ?",
                    (record.expires_at, record.scope, replace_expired_before),
                ).rowcount
            if written == 1:
                return True, None
            return False, conn.execute(
                f"SELECT {_COLUMNS} FROM idempotency WHERE scope = ?", (record.scope,)
            ).fetchone()

        written, row = self.db.tx(body)
        return written, self._idem(row) if row else None

    def _complete_idempotency(self, record: IdempotencyRecord) -> None:
        self.db.write(
            "UPDATE idempotency SET status = ?, expires_at = ?, response = ?, response_code = ? WHERE scope = ?",
            (record.status, record.expires_at, dumps(record.response), record.response_code, record.scope),
        )

    def _delete_idempotency(self, scope: str) -> None:
        self.db.write("DELETE FROM idempotency WHERE scope = ?", (scope,))
