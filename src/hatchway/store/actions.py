"""Rules for action versions behind a head; backends implement the seven primitives.

Registering the latest version's content again is a no-op; anything else is a new version whose
head moves with compare-and-set on the latest version number, so concurrent registrations get
distinct versions. Deleting hides the head and keeps every version (runs still resolve theirs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from hatchway.domain.actions import ActionHead, ActionRecord
from hatchway.domain.records import Page
from hatchway.domain.runs import now_ms
from hatchway.errors import Conflict, NotFound
from hatchway.store._cursor import decode_cursor, encode_cursor


class BaseActionRepo(ABC):
    """Registered actions and their immutable versions."""

    # ---- primitives ------------------------------------------------------------------------

    @abstractmethod
    def _get_head(self, project_id: str, environment: str, name: str) -> ActionHead | None:
        """The head; with its latest version in ``record`` when the backend keeps them together."""

    @abstractmethod
    def _put_version(self, record: ActionRecord, head: ActionHead, expected_latest: int | None) -> bool:
        """Write a version and move the head, if the head's latest version is still ``expected_latest``
        (None: no head yet). False when another registration won the race."""

    @abstractmethod
    def _set_head_deleted(self, project_id: str, environment: str, name: str) -> bool: ...

    @abstractmethod
    def _get_version(self, project_id: str, environment: str, name: str, version: int) -> ActionRecord | None: ...

    @abstractmethod
    def _find_version_by_digest(self, project_id: str, environment: str, name: str, digest: str) -> ActionRecord | None:
        """The newest version with that digest."""

    @abstractmethod
    def _list_heads(
        self, project_id: str, environment: str, after: str | None, limit: int, tag: str | None
    ) -> list[ActionHead]:
        """Live heads ordered by name, strictly after ``after``."""

    @abstractmethod
    def _list_versions(
        self, project_id: str, environment: str, name: str, before: int | None, limit: int
    ) -> list[ActionRecord]:
        """Versions newest first, strictly below ``before``."""

    # ---- rules -----------------------------------------------------------------------------

    def register_version(
        self, project_id: str, environment: str, spec: dict[str, Any], digest: str
    ) -> tuple[ActionRecord, bool]:
        """A new version, or the latest one if it has the same digest (``created`` False)."""
        name = spec["name"]
        for _ in range(50):
            head = self._get_head(project_id, environment, name)
            if head is not None and not head.deleted:
                latest = self._latest(head)
                if latest is not None and latest.digest == digest:
                    return latest, False
            expected = head.latest_version if head else None
            record = ActionRecord(
                project_id=project_id,
                environment=environment,
                name=name,
                version=(expected or 0) + 1,
                digest=digest,
                created_at=now_ms(),
                spec=spec,
            )
            new_head = ActionHead(project_id, environment, name, record.version, record.tags, False)
            if self._put_version(record, new_head, expected):
                return record, True
        raise Conflict(f"action {name} is being registered concurrently; try again")

    def get_action(
        self,
        project_id: str,
        environment: str,
        name: str,
        version: int | None = None,
        digest: str | None = None,
        include_deleted: bool = False,
    ) -> ActionRecord | None:
        head = self._get_head(project_id, environment, name)
        if head is None or (head.deleted and not include_deleted):
            return None
        if digest is not None:
            record = self._find_version_by_digest(project_id, environment, name, digest)
            if record is None or (version is not None and record.version != version):
                return None
            return record
        if version is None or version == head.latest_version:
            return self._latest(head)
        return self._get_version(project_id, environment, name, version)

    def _latest(self, head: ActionHead) -> ActionRecord | None:
        if head.record is not None and head.record.version == head.latest_version:
            return head.record
        return self._get_version(head.project_id, head.environment, head.name, head.latest_version)

    def list_actions(
        self, project_id: str, environment: str, limit: int, cursor: str | None, tag: str | None = None
    ) -> Page[ActionRecord]:
        scope = ("actions", project_id, environment, tag or "")
        after = decode_cursor(cursor, scope)
        heads = self._list_heads(project_id, environment, after, limit + 1, tag)
        records = []
        for head in heads[:limit]:
            record = self._latest(head)
            if record is not None:
                records.append(record)
        more = len(heads) > limit
        return Page(records, encode_cursor(scope, heads[limit - 1].name) if more else None)

    def list_versions(
        self, project_id: str, environment: str, name: str, limit: int, cursor: str | None
    ) -> Page[ActionRecord]:
        head = self._get_head(project_id, environment, name)
        if head is None or head.deleted:
            raise NotFound(f"no action named {name}")
        scope = ("versions", project_id, environment, name)
        before = decode_cursor(cursor, scope)
        items = self._list_versions(project_id, environment, name, before, limit + 1)
        more = len(items) > limit
        items = items[:limit]
        return Page(items, encode_cursor(scope, items[-1].version) if more else None)

    def delete_action(self, project_id: str, environment: str, name: str) -> bool:
        head = self._get_head(project_id, environment, name)
        if head is None or head.deleted:
            return False
        return self._set_head_deleted(project_id, environment, name)
