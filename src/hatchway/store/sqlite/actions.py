"""Action heads and versions in SQLite (tables ``action_heads`` and ``action_versions``)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from hatchway.domain.actions import ActionHead, ActionRecord
from hatchway.store.actions import BaseActionRepo
from hatchway.store.sqlite._db import Database, dumps


class SqliteActionRepo(BaseActionRepo):
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    def _head(row: tuple[Any, ...]) -> ActionHead:
        return ActionHead(row[0], row[1], row[2], row[3], json.loads(row[4]), bool(row[5]))

    @staticmethod
    def _version(row: tuple[Any, ...]) -> ActionRecord:
        return ActionRecord(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]))

    _VERSION_COLS = "project_id, environment, name, version, digest, created_at, spec"

    def _get_head(self, project_id: str, environment: str, name: str) -> ActionHead | None:
        # the latest version comes along in the same statement: resolving an action is one read
        return self.db.one(
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
        def body(conn: sqlite3.Connection) -> bool:
            if expected_latest is None:
                moved = conn.execute(
                    "INSERT OR IGNORE INTO action_heads(project_id, environment, name, latest_version, tags, "
                    "deleted) VALUES (?, ?, ?, ?, ?, 0)",
                    (head.project_id, head.environment, head.name, head.latest_version, dumps(head.tags)),
                ).rowcount
            else:
                moved = conn.execute(
                    "UPDATE action_heads SET latest_version = ?, tags = ?, deleted = 0 "
                    "WHERE project_id = ? AND environment = ? AND name = ? AND latest_version = ?",
                    (
                        head.latest_version,
                        dumps(head.tags),
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
                    dumps(record.spec),
                ),
            )
            return True

        return self.db.tx(body)

    def _set_head_deleted(self, project_id: str, environment: str, name: str) -> bool:
        return (
            self.db.write(
                "UPDATE action_heads SET deleted = 1 WHERE project_id = ? AND environment = ? AND name = ? "
                "AND deleted = 0",
                (project_id, environment, name),
            )
            == 1
        )

    def _get_version(self, project_id: str, environment: str, name: str, version: int) -> ActionRecord | None:
        return self.db.one(
            f"SELECT {self._VERSION_COLS} FROM action_versions "
            "WHERE project_id = ? AND environment = ? AND name = ? AND version = ?",
            (project_id, environment, name, version),
            self._version,
        )

    def _find_version_by_digest(self, project_id: str, environment: str, name: str, digest: str) -> ActionRecord | None:
        return self.db.one(
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
        return [self._head(row) for row in self.db.rows(sql, tuple(args))]

    def _list_versions(
        self, project_id: str, environment: str, name: str, before: int | None, limit: int
    ) -> list[ActionRecord]:
        rows = self.db.rows(
            f"SELECT {self._VERSION_COLS} FROM action_versions "
            "WHERE project_id = ? AND environment = ? AND name = ? AND version < ? ORDER BY version DESC LIMIT ?",
            (project_id, environment, name, before if before is not None else 2**62, limit),
        )
        return [self._version(row) for row in rows]
