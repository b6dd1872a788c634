"""Projects and tokens in SQLite (tables ``projects`` and ``tokens``)."""

from __future__ import annotations

import json
from typing import Any

from hatchway.domain.tenants import Project, TokenRecord
from hatchway.store.sqlite._db import Database, dumps
from hatchway.store.tenants import BaseTenantRepo


class SqliteTenantRepo(BaseTenantRepo):
    def __init__(self, db: Database) -> None:
        self.db = db

    def _put_project(self, project: Project, unique_name: bool = True) -> bool:
        # one statement, so one write transaction: the name check and the insert cannot interleave
        taken = "SELECT 1 FROM projects WHERE name = ?" if unique_name else "SELECT 1 WHERE 0 AND ? IS NULL"
        return (
            self.db.write(
                f"INSERT OR IGNORE INTO projects(id, name, created_at) SELECT ?, ?, ? WHERE NOT EXISTS ({taken})",  # noqa: S608 - a constant
                (project.id, project.name, project.created_at, project.name),
            )
            == 1
        )

    def _get_project(self, project_id: str) -> Project | None:
        return self.db.one(
            "SELECT id, name, created_at FROM projects WHERE id = ?", (project_id,), lambda r: Project(*r)
        )

    def _find_project(self, name: str) -> Project | None:
        return self.db.one(
            "SELECT id, name, created_at FROM projects WHERE name = ? ORDER BY created_at, id LIMIT 1",
            (name,),
            lambda r: Project(*r),
        )

    def _list_projects(self, after: str | None, limit: int) -> list[Project]:
        rows = self.db.rows(
            "SELECT id, name, created_at FROM projects WHERE id > ? ORDER BY id LIMIT ?", (after or "", limit)
        )
        return [Project(*row) for row in rows]

    def _put_token(self, token: TokenRecord) -> None:
        self.db.write(
            "INSERT OR REPLACE INTO tokens(id, project_id, secret_hash, scopes, environments, created_at, "
            "expires_at, last_used_at, name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                token.id,
                token.project_id,
                token.secret_hash,
                dumps(token.scopes),
                None if token.environments is None else dumps(token.environments),
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
        return self.db.one(f"SELECT {self._TOKEN_COLS} FROM tokens WHERE id = ?", (token_id,), self._token)

    def _list_tokens(self, project_id: str) -> list[TokenRecord]:
        rows = self.db.rows(
            f"SELECT {self._TOKEN_COLS} FROM tokens WHERE project_id = ? ORDER BY created_at, id", (project_id,)
        )
        return [self._token(row) for row in rows]

    def _delete_token(self, token_id: str) -> bool:
        return self.db.write("DELETE FROM tokens WHERE id = ?", (token_id,)) == 1

    def _touch_token(self, token_id: str, when: int) -> None:
        self.db.write("UPDATE tokens SET last_used_at = ? WHERE id = ?", (when, token_id))
