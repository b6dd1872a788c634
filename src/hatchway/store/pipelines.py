"""Rules for pipelines; backends implement five primitives for definitions and five for executions.

Definitions follow the discipline of actions (versions behind a head moved with compare-and-set,
identical content a no-op, deletion hides the head); executions that of runs (written whole with
compare-and-set on a revision), changed through a function that sees the current execution.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from hatchway.domain.pipelines.records import Execution, PipelineHead, PipelineRecord
from hatchway.domain.records import Page
from hatchway.domain.runs import now_ms
from hatchway.errors import Conflict, NotFound
from hatchway.store._cursor import decode_cursor, encode_cursor


class DefinitionRules(ABC):
    """Pipeline definitions: immutable versions behind a head."""

    @abstractmethod
    def _get_pipeline_head(self, project_id: str, environment: str, name: str) -> PipelineHead | None: ...

    @abstractmethod
    def _put_pipeline_version(self, record: PipelineRecord, head: PipelineHead, expected_latest: int | None) -> bool:
        """Write a version and move the head if its latest version is still ``expected_latest``
        (None: no head yet). False when another definition won the race."""

    @abstractmethod
    def _get_pipeline_version(
        self, project_id: str, environment: str, name: str, version: int
    ) -> PipelineRecord | None: ...

    @abstractmethod
    def _list_pipeline_heads(
        self, project_id: str, environment: str, after: str | None, limit: int
    ) -> list[PipelineHead]:
        """Live heads ordered by name, strictly after ``after``."""

    @abstractmethod
    def _set_pipeline_head_deleted(self, project_id: str, environment: str, name: str) -> bool: ...

    def register_pipeline(
        self, project_id: str, environment: str, name: str, spec: dict[str, Any], digest: str,
        engine_ref: str | None = None,
    ) -> tuple[PipelineRecord, bool]:  # fmt: skip
        """A new version, or the latest one if it has the same digest (``created`` False)."""
        for _ in range(50):
            head = self._get_pipeline_head(project_id, environment, name)
            if head is not None and not head.deleted:
                latest = self._get_pipeline_version(project_id, environment, name, head.latest_version)
                if latest is not None and latest.digest == digest:
                    return latest, False
            expected = head.latest_version if head else None
            record = PipelineRecord(
                project_id, environment, name, (expected or 0) + 1, digest, now_ms(), spec, engine_ref
            )
            if self._put_pipeline_version(
                record, PipelineHead(project_id, environment, name, record.version), expected
            ):
                return record, True
        raise Conflict(f"pipeline {name} is being defined concurrently; try again")

    def get_pipeline(
        self, project_id: str, environment: str, name: str, version: int | None = None, include_deleted: bool = False
    ) -> PipelineRecord | None:
        head = self._get_pipeline_head(project_id, environment, name)
        if head is None or (head.deleted and not include_deleted):
            return None
        return self._get_pipeline_version(project_id, environment, name, version or head.latest_version)

    def list_pipelines(self, project_id: str, environment: str, limit: int, cursor: str | None) -> Page[PipelineRecord]:
        scope = ("pipelines", project_id, environment)
        heads = self._list_pipeline_heads(project_id, environment, decode_cursor(cursor, scope), limit + 1)
        records = [
            record
            for head in heads[:limit]
            if (record := self._get_pipeline_version(project_id, environment, head.name, head.latest_version))
        ]
        more = len(heads) > limit
        return Page(records, encode_cursor(scope, heads[limit - 1].name) if more else None)

    def delete_pipeline(self, project_id: str, environment: str, name: str) -> bool:
        head = self._get_pipeline_head(project_id, environment, name)
        if head is None or head.deleted:
            return False
        return self._set_pipeline_head_deleted(project_id, environment, name)


class ExecutionRules(ABC):
    """Executions of pipelines, written whole with compare-and-set on a revision."""

    @abstractmethod
    def _insert_execution(self, execution: Execution) -> bool:
        """Insert if absent; False if the id exists."""

    @abstractmethod
    def _get_execution(self, execution_id: str) -> tuple[Execution, int] | None:
        """The execution and its revision."""

    @abstractmethod
    def _replace_execution(self, execution: Execution, expected_rev: int) -> bool:
        """Write the whole execution if its revision is still ``expected_rev`` (the new one is +1)."""

    @abstractmethod
    def _list_executions(
        self, project_id: str, environment: str, pipeline: str | None, before: str | None, limit: int,
        status: str | None,
    ) -> list[Execution]:  # fmt: skip
        """Executions newest first (by id), strictly before ``before``; of one pipeline when given."""

    @abstractmethod
    def _active_executions(self, engine: str, limit: int) -> list[Execution]:
        """Executions of ``engine`` that have not ended, oldest first."""

    def create_execution(self, execution: Execution) -> Execution:
        if not self._insert_execution(execution):
            raise Conflict(f"execution {execution.id} already exists")
        return execution

    def get_execution(
        self, execution_id: str, project_id: str | None = None, environment: str | None = None
    ) -> Execution | None:
        """An execution, or None - also when it belongs to another project or environment."""
        found = self._get_execution(execution_id)
        if found is None:
            return None
        execution = found[0]
        if project_id is not None and execution.project_id != project_id:
            return None
        if environment is not None and execution.environment != environment:
            return None
        return execution

    def update_execution(self, execution_id: str, change: Callable[[Execution], Execution | None]) -> Execution:
        """Apply ``change`` to the current execution and write it, atomically.

        ``change`` gets a fresh copy each time a concurrent writer wins the race, and may return
        None to write nothing (the current execution is returned).
        """
        for _ in range(100):
            found = self._get_execution(execution_id)
            if found is None:
                raise NotFound(f"no execution {execution_id}")
            current, rev = found
            updated = change(copy.deepcopy(current))
            if updated is None or updated == current:
                return current
            if self._replace_execution(updated, rev):
                return updated
        raise Conflict(f"execution {execution_id} is changing too fast; try again")

    def list_executions(
        self,
        project_id: str,
        environment: str,
        pipeline: str | None,
        limit: int,
        cursor: str | None,
        status: str | None = None,
    ) -> Page[Execution]:
        scope = ("executions", project_id, environment, pipeline or "", status or "")
        items = self._list_executions(
            project_id, environment, pipeline, decode_cursor(cursor, scope), limit + 1, status or None
        )
        more = len(items) > limit
        items = items[:limit]
        return Page(items, encode_cursor(scope, items[-1].id) if more else None)

    def active_executions(self, engine: str, limit: int = 200) -> list[Execution]:
        return self._active_executions(engine, limit)


class BasePipelineRepo(DefinitionRules, ExecutionRules, ABC):
    """Pipeline definitions and their executions: one repository, two families of primitives."""
