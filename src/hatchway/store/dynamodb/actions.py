"""Actions on DynamoDB: a head per action (embedding its latest version, so resolving an action is
one ``GetItem``), its versions, and a pointer per digest (embedding that version).

action head      ``ACTIONS#<p>#<env>`` / ``H#<name>``
action version   ``ACTION#<p>#<env>#<n>`` / ``V#<version:010d>``
digest pointer   ``ACTION#<p>#<env>#<n>`` / ``D#<digest>``
"""

from __future__ import annotations

from typing import Any

from hatchway.domain.actions import ActionHead, ActionRecord
from hatchway.errors import ValidationFailed
from hatchway.store.actions import BaseActionRepo
from hatchway.store.dynamodb._table import MAX_SEQ, Canceled, Table, n, s, take


class DynamoDbActionRepo(BaseActionRepo):
    def __init__(self, table: Table) -> None:
        self.table = table

    def _version_item(self, record: ActionRecord, pk: str, sk: str) -> dict[str, Any]:
        return {
            "pk": s(pk),
            "sk": s(sk),
            "version": n(record.version),
            "digest": s(record.digest),
            "created_at": n(record.created_at),
            # under its project: a run container's task role reads its own project's specs alone
            **self.table.pack(record.spec, f"specs/{record.project_id}/{record.digest.removeprefix('sha256:')}.json.z"),
        }

    def _record(self, project_id: str, environment: str, name: str, item: dict[str, Any]) -> ActionRecord:
        return ActionRecord(
            project_id=project_id,
            environment=environment,
            name=name,
            version=int(item["version"]["N"]),
            digest=item["digest"]["S"],
            created_at=int(item["created_at"]["N"]),
            spec=self.table.unpack(item),
        )

    def _head(self, project_id: str, environment: str, item: dict[str, Any]) -> ActionHead:
        name = item["sk"]["S"].removeprefix("H#")
        return ActionHead(
            project_id=project_id,
            environment=environment,
            name=name,
            latest_version=int(item["latest_version"]["N"]),
            tags=[tag["S"] for tag in item.get("tags", {}).get("L", [])],
            deleted=bool(item.get("deleted", {}).get("BOOL", False)),
            record=self._record(project_id, environment, name, item) if "version" in item else None,
        )

    def _get_head(self, project_id: str, environment: str, name: str) -> ActionHead | None:
        item = self.table.get(f"ACTIONS#{project_id}#{environment}", f"H#{name}")
        return self._head(project_id, environment, item) if item else None

    def _put_version(self, record: ActionRecord, head: ActionHead, expected_latest: int | None) -> bool:
        versions = f"ACTION#{record.project_id}#{record.environment}#{record.name}"
        head_item = self._version_item(record, f"ACTIONS#{record.project_id}#{record.environment}", f"H#{head.name}")
        head_item.update(
            {
                "latest_version": n(head.latest_version),
                "tags": {"L": [s(tag) for tag in head.tags]},
                "deleted": {"BOOL": False},
            }
        )
        if expected_latest is None:
            head_put: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            head_put = {
                "ConditionExpression": "latest_version = :e",
                "ExpressionAttributeValues": {":e": n(expected_latest)},
            }
        items = [
            {"Put": {"TableName": self.table.name, "Item": head_item, **head_put}},
            {
                "Put": {
                    "TableName": self.table.name,
                    "Item": self._version_item(record, versions, f"V#{record.version:010d}"),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {"Put": {"TableName": self.table.name, "Item": self._version_item(record, versions, f"D#{record.digest}")}},
        ]
        try:
            self.table.transact(items)
        except Canceled:
            return False
        return True

    def _set_head_deleted(self, project_id: str, environment: str, name: str) -> bool:
        answer = self.table.conditional(
            "update_item",
            Key={"pk": s(f"ACTIONS#{project_id}#{environment}"), "sk": s(f"H#{name}")},
            UpdateExpression="SET deleted = :t",
            ConditionExpression="deleted = :f",
            ExpressionAttributeValues={":t": {"BOOL": True}, ":f": {"BOOL": False}},
        )
        return answer is not None

    def _get_version(self, project_id: str, environment: str, name: str, version: int) -> ActionRecord | None:
        item = self.table.get(f"ACTION#{project_id}#{environment}#{name}", f"V#{version:010d}")
        return self._record(project_id, environment, name, item) if item else None

    def _find_version_by_digest(self, project_id: str, environment: str, name: str, digest: str) -> ActionRecord | None:
        item = self.table.get(f"ACTION#{project_id}#{environment}#{name}", f"D#{digest}")
        return self._record(project_id, environment, name, item) if item else None

    def _list_heads(
        self, project_id: str, environment: str, after: str | None, limit: int, tag: str | None
    ) -> list[ActionHead]:
        if after is not None and not isinstance(after, str):
            raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued")
        values: dict[str, Any] = {":p": s(f"ACTIONS#{project_id}#{environment}"), ":f": {"BOOL": False}}
        if after:
            condition = "pk = :p AND sk > :a"
            values[":a"] = s(f"H#{after}")
        else:
            condition = "pk = :p AND begins_with(sk, :a)"
            values[":a"] = s("H#")
        where = "deleted = :f"
        if tag:
            where += " AND contains(tags, :t)"
            values[":t"] = s(tag)
        items = self.table.query(
            KeyConditionExpression=condition,
            FilterExpression=where,
            ExpressionAttributeValues=values,
            ConsistentRead=True,
            Limit=max(limit, 25),
        )
        return [self._head(project_id, environment, item) for item in take(items, limit)]

    def _list_versions(
        self, project_id: str, environment: str, name: str, before: int | None, limit: int
    ) -> list[ActionRecord]:
        if before is not None and (not isinstance(before, int) or isinstance(before, bool)):
            raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued")
        top = MAX_SEQ if before is None else before - 1
        if top < 1:
            return []
        pk = f"ACTION#{project_id}#{environment}#{name}"
        items = self.table.between(pk, f"V#{0:010d}", f"V#{min(top, 10**10 - 1):010d}", limit, newest_first=True)
        return [self._record(project_id, environment, name, item) for item in items]
