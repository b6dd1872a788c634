"""Rules for small named JSON documents; backends implement the four primitives.

Documents hold what is neither an action nor a run: cache tags and cached answers, session types,
file stash records, callback secrets. An expired document is gone for every reader at once, even
before the backend's own expiry (DynamoDB's TTL) removes it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from hatchway.domain.records import DEFAULT_PAGE, Document, Page
from hatchway.domain.runs import now_ms
from hatchway.store._cursor import decode_cursor, encode_cursor


class BaseDocumentRepo(ABC):
    """Documents of a project and environment, by kind and name."""

    # ---- primitives ------------------------------------------------------------------------

    @abstractmethod
    def _put_document(self, document: Document) -> None:
        """Insert or replace."""

    @abstractmethod
    def _get_document(self, project_id: str, environment: str, kind: str, name: str) -> Document | None: ...

    @abstractmethod
    def _delete_document(self, project_id: str, environment: str, kind: str, name: str) -> bool: ...

    @abstractmethod
    def _list_documents(
        self, project_id: str, environment: str, kind: str, after: str | None, limit: int
    ) -> list[Document]:
        """Documents of a kind ordered by name, strictly after ``after``."""

    # ---- rules -----------------------------------------------------------------------------

    def put_document(self, document: Document) -> Document:
        document.updated_at = now_ms()
        self._put_document(document)
        return document

    def get_document(self, project_id: str, environment: str, kind: str, name: str) -> Document | None:
        """A live document; an expired one is removed and reported missing."""
        document = self._get_document(project_id, environment, kind, name)
        if document is not None and document.is_expired(now_ms()):
            self._delete_document(project_id, environment, kind, name)
            return None
        return document

    def delete_document(self, project_id: str, environment: str, kind: str, name: str) -> bool:
        return self._delete_document(project_id, environment, kind, name)

    def list_documents(
        self, project_id: str, environment: str, kind: str, limit: int = DEFAULT_PAGE, cursor: str | None = None
    ) -> Page[Document]:
        scope = ("documents", project_id, environment, kind)
        after = decode_cursor(cursor, scope)
        now = now_ms()
        found = [
            d for d in self._list_documents(project_id, environment, kind, after, limit + 1) if not d.is_expired(now)
        ]
        more = len(found) > limit
        found = found[:limit]
        return Page(found, encode_cursor(scope, found[-1].name) if more else None)
