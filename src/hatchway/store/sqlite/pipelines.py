"""Pipeline definitions and executions in SQLite (``pipeline_heads``, ``pipeline_versions``, ``executions``)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from hatchway.domain.pipelines.records import Execution, PipelineHead, PipelineRecord
from hatchway.store.pipelines import BasePipelineRepo
from hatchway.store.sqlite._db import Database, dumps


class SqlitePipelineRepo(BasePipelineRepo):
    def __init__(self, db: Database) -> None:
        self.db = db

    _PIPELINE_COLS = "project_id, environment, name, version, digest, created_at, spec, engine_ref"

    @staticmethod
    def _pipeline(row: tuple[Any, ...]) -> PipelineRecord:
        return PipelineRecord(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), row[7])

    @staticmethod
    def _pipeline_head(row: tuple[Any, ...]) -> PipelineHead:
        return PipelineHead(row[0], row[1], row[2], row[3], bool(row[4]))

    def _get_pipeline_head(self, project_id: str, environment: str, name: str) -> PipelineHead | None:
        return self.db.one(
            "SELECT project_id, environment, name, latest_version, deleted FROM pipeline_heads "
            "WHERE project_id = ? AND environment = ? AND name = ?",
            (project_id, environment, name),
            self._pipeline_head,
        )

    def _put_pipeline_version(self, record: PipelineRecord, head: PipelineHead, expected_latest: int | None) -> bool:
        def body(conn: sqlite3.Connection) -> bool:
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
                    record.created_at, dumps(record.spec), record.engine_ref,
                ),
            )  # fmt: skip
            return True

        return self.db.tx(body)

    def _get_pipeline_version(
        self, project_id: str, environment: str, name: str, version: int
    ) -> PipelineRecord | None:
        return self.db.one(
            f"SELECT {self._PIPELINE_COLS} FROM pipeline_versions "
            "WHERE project_id = ? AND environment = ? AND name = ? AND version = ?",
            (project_id, environment, name, version),
            self._pipeline,
        )

    def _list_pipeline_heads(
        self, project_id: str, environment: str, after: str | None, limit: int
    ) -> list[PipelineHead]:
        rows = self.db.rows(
            "SELECT project_id, environment, name, latest_version, deleted FROM pipeline_heads "
            "WHERE project_id = ? AND environment = ? AND deleted = 0 AND name > ? ORDER BY name LIMIT ?",
            (project_id, environment, after or "", limit),
        )
        return [self._pipeline_head(row) for row in rows]

    def _set_pipeline_head_deleted(self, project_id: str, environment: str, name: str) -> bool:
        return (
            self.db.write(
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
            dumps(execution.to_dict()),
        )

    def _insert_execution(self, execution: Execution) -> bool:
        return (
            self.db.write(
                "INSERT OR IGNORE INTO executions(project_id, environment, pipeline, status, engine, is_active, data, "
                "id, rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (*self._execution_args(execution), execution.id),
            )
            == 1
        )

    def _get_execution(self, execution_id: str) -> tuple[Execution, int] | None:
        return self.db.one(
            "SELECT data, rev FROM executions WHERE id = ?",
            (execution_id,),
            lambda r: (Execution.from_dict(json.loads(r[0])), r[1]),
        )

    def _replace_execution(self, execution: Execution, expected_rev: int) -> bool:
        return (
            self.db.write(
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
        return [Execution.from_dict(json.loads(row[0])) for row in self.db.rows(sql, tuple(args))]

    def _active_executions(self, engine: str, limit: int) -> list[Execution]:
        rows = self.db.rows(
            "SELECT data FROM executions WHERE engine = ? AND is_active = 1 ORDER BY id LIMIT ?", (engine, limit)
        )
        return [Execution.from_dict(json.loads(row[0])) for row in rows]
