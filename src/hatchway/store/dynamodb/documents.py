"""Documents on DynamoDB: ``DOC#<p>#<env>#<kind>`` / ``N#<name>``, the body packed (in the outputs
bucket when too large); an expiring one carries the TTL attribute."""

from __future__ import annotations

import uuid
from typing import Any

from hatchway.domain.records import Document
from hatchway.errors import ValidationFailed
from hatchway.store.documents import BaseDocumentRepo
from hatchway.store.dynamodb._table import TTL_ATTRIBUTE, Table, expiration, n, num, s, take


class DynamoDbDocumentRepo(BaseDocumentRepo):
    def __init__(self, table: Table) -> None:
        self.table = table

    @staticmethod
    def _document_key(project_id: str, environment: str, kind: str, name: str) -> dict[str, Any]:
        return {"pk": s(f"DOC#{project_id}#{environment}#{kind}"), "sk": s(f"N#{name}")}

    def _document(self, item: dict[str, Any]) -> Document:
        _, project_id, environment, kind = item["pk"]["S"].split("#", 3)
        return Document(
            project_id=project_id,
            environment=environment,
            kind=kind,
            name=item["sk"]["S"][2:],
            body=self.table.unpack(item),
            updated_at=int(item["updated_at"]["N"]),
            expires_at=num(item, "expires_at"),
        )

    def _put_document(self, document: Document) -> None:
        item: dict[str, Any] = {
            **self._document_key(document.project_id, document.environment, document.kind, document.name),
            "updated_at": n(document.updated_at),
            **self.table.pack(document.body, f"documents/{uuid.uuid4().hex}.json.z"),
        }
        if document.expires_at is not None:
            item["expires_at"] = n(document.expires_at)
            item[TTL_ATTRIBUTE] = expiration(document.expires_at)
        answer = self.table.put(item, ReturnValues="ALL_OLD")
        self.table.drop_blob(answer.get("Attributes"), keep=item)

    def _get_document(self, project_id: str, environment: str, kind: str, name: str) -> Document | None:
        key = self._document_key(project_id, environment, kind, name)
        item = self.table.get(key["pk"]["S"], key["sk"]["S"])
        return self._document(item) if item else None

    def _delete_document(self, project_id: str, environment: str, kind: str, name: str) -> bool:
        answer = self.table.delete(self._document_key(project_id, environment, kind, name), ReturnValues="ALL_OLD")
        old = answer.get("Attributes")
        self.table.drop_blob(old)
        return bool(old)

    def _list_documents(
        self, project_id: str, environment: str, kind: str, after: str | None, limit: int
    ) -> list[Document]:
        if after is not None and not isinstance(after, str):
            raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued")
        values = {":p": self._document_key(project_id, environment, kind, "")["pk"], ":a": s(f"N#{after or ''}")}
        # the partition holds only this kind's documents, so "after" is a plain range on the name
        condition = "pk = :p AND sk > :a" if after else "pk = :p AND begins_with(sk, :a)"
        query = self.table.query(
            KeyConditionExpression=condition, ExpressionAttributeValues=values, ConsistentRead=True, Limit=limit
        )
        return [self._document(item) for item in take(query, limit)]
