"""Documents in SQLite (table ``documents``)."""

from __future__ import annotations

import json
from typing import Any

from hatchway.domain.records import Document
from hatchway.store.documents import BaseDocumentRepo
from hatchway.store.sqlite._db import Database, dumps


class SqliteDocumentRepo(BaseDocumentRepo):
    def __init__(self, db: Database) -> None:
        self.db = db

    _DOCUMENT_COLS = "project_id, environment, kind, name, body, updated_at, expires_at"

    @staticmethod
    def _document(row: tuple[Any, ...]) -> Document:
        return Document(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6])

    def _put_document(self, document: Document) -> None:
        self.db.write(
            f"INSERT OR REPLACE INTO documents({self._DOCUMENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                document.project_id,
                document.environment,
                document.kind,
                document.name,
                dumps(document.body),
                document.updated_at,
                document.expires_at,
            ),
        )

    def _get_document(self, project_id: str, environment: str, kind: str, name: str) -> Document | None:
        return self.db.one(
            f"SELECT {self._DOCUMENT_COLS} FROM documents "
            "WHERE project_id = ? AND environment = ? AND kind = ? AND name = ?",
            (project_id, environment, kind, name),
            self._document,
        )

    def _delete_document(self, project_id: str, environment: str, kind: str, name: str) -> bool:
        return (
            self.db.write(
                "DELETE FROM documents WHERE project_id = ? AND environment = ? AND kind = ? AND name = ?",
                (project_id, environment, kind, name),
            )
            == 1
        )

    def _list_documents(
        self, project_id: str, environment: str, kind: str, after: str | None, limit: int
    ) -> list[Document]:
        rows = self.db.rows(
            f"SELECT {self._DOCUMENT_COLS} FROM documents "
            "WHERE project_id = ? AND environment = ? AND kind = ? AND name > ? ORDER BY name LIMIT ?",
            (project_id, environment, kind, after or "", limit),
        )
        return [self._document(row) for row in rows]
