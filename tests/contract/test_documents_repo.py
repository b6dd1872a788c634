"""The document repository's contract: replaced, isolated, expiring, listed in pages.

Each test runs once per backend of the ``repos`` fixture (``conftest.py``); nothing here knows which.
"""

from __future__ import annotations

from typing import Any

import pytest

from hatchway.domain.runs import now_ms
from hatchway.errors import ValidationFailed
from hatchway.store.documents import BaseDocumentRepo
from tests.contract.records import DEV, PROD, P, Q


def doc(
    name: str, body: dict[str, Any] | None = None, project: str = P, env: str = DEV, kind: str = "k", **kw: Any
) -> Any:
    from hatchway.domain.records import Document

    return Document(project, env, kind, name, body if body is not None else {"name": name}, **kw)


def test_documents_are_replaced_and_isolated(documents: BaseDocumentRepo) -> None:
    first = documents.put_document(doc("a", {"v": 1}))
    assert first.updated_at > 0
    assert documents.get_document(P, DEV, "k", "a") == first
    documents.put_document(doc("a", {"v": 2, "nested": {"x": [1, "ü"]}}))
    assert documents.get_document(P, DEV, "k", "a").body == {"v": 2, "nested": {"x": [1, "ü"]}}  # type: ignore[union-attr]
    for other in ((Q, DEV, "k"), (P, PROD, "k"), (P, DEV, "other")):
        assert documents.get_document(*other, "a") is None
    assert documents.delete_document(P, DEV, "k", "a") is True
    assert documents.delete_document(P, DEV, "k", "a") is False
    assert documents.get_document(P, DEV, "k", "a") is None


def test_expired_documents_are_gone(documents: BaseDocumentRepo) -> None:
    now = now_ms()
    documents.put_document(doc("old", expires_at=now - 1))
    documents.put_document(doc("fresh", expires_at=now + 60_000))
    documents.put_document(doc("forever"))
    assert documents.get_document(P, DEV, "k", "old") is None
    assert [d.name for d in documents.list_documents(P, DEV, "k", 10).items] == ["forever", "fresh"]
    assert documents.get_document(P, DEV, "k", "fresh").expires_at == now + 60_000  # type: ignore[union-attr]


def test_documents_list_by_name_in_pages(documents: BaseDocumentRepo) -> None:
    for name in ("d", "b", "e", "a", "c"):
        documents.put_document(doc(name))
    documents.put_document(doc("z", kind="another"))
    first = documents.list_documents(P, DEV, "k", 2)
    assert [d.name for d in first.items] == ["a", "b"]
    second = documents.list_documents(P, DEV, "k", 2, first.next)
    assert [d.name for d in second.items] == ["c", "d"]
    last = documents.list_documents(P, DEV, "k", 2, second.next)
    assert [d.name for d in last.items] == ["e"] and last.next is None
    with pytest.raises(ValidationFailed):
        documents.list_documents(P, DEV, "another", 2, first.next)
    with pytest.raises(ValidationFailed):
        documents.list_documents(Q, DEV, "k", 2, first.next)


def test_a_large_document_round_trips(documents: BaseDocumentRepo) -> None:
    body = {"ret": ["v" * 1000 + str(i) for i in range(4000)]}
    documents.put_document(doc("big", body))
    assert documents.get_document(P, DEV, "k", "big").body == body  # type: ignore[union-attr]
    documents.put_document(doc("big", {"small": True}))
    assert documents.get_document(P, DEV, "k", "big").body == {"small": True}  # type: ignore[union-attr]
    assert documents.delete_document(P, DEV, "k", "big")
