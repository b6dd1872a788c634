"""Projects and tokens on DynamoDB.

project  ``PROJECT#<id>`` / ``P``, on gsi1 under ``PROJECTS`` by id
its name ``PROJECTNAME#<name>`` / ``N`` -> the project's id (names are unique per deployment)
token    ``TOKEN#<id>`` / ``T``, on gsi1 under ``TOKENS#<project>`` by creation time

Projects written by earlier versions lack their gsi1 keys (so ``GET /v1/projects`` would not list
them) and their name claim (so a second project could take their name):
:meth:`DynamoDbTenantRepo.backfill_projects` (``hatchway aws migrate``) adds both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hatchway.domain.tenants import Project, TokenRecord
from hatchway.store.dynamodb._table import Canceled, Table, dumps, n, num, s, string
from hatchway.store.tenants import BaseTenantRepo


@dataclass
class Backfilled:
    """What :meth:`DynamoDbTenantRepo.backfill_projects` changed: project ids."""

    indexed: list[str] = field(default_factory=list)
    claimed: list[str] = field(default_factory=list)


class DynamoDbTenantRepo(BaseTenantRepo):
    def __init__(self, table: Table) -> None:
        self.table = table

    def _put_project(self, project: Project, unique_name: bool = True) -> bool:
        item = {
            "pk": s(f"PROJECT#{project.id}"),
            "sk": s("P"),
            "name": s(project.name),
            "created_at": n(project.created_at),
            "gsi1pk": s("PROJECTS"),
            "gsi1sk": s(project.id),
        }
        claim = {"pk": s(f"PROJECTNAME#{project.name}"), "sk": s("N"), "project_id": s(project.id)}
        absent = "attribute_not_exists(pk)"
        if not unique_name:  # the name is claimed if it is free; the project is kept either way
            if self.table.conditional("put_item", Item=item, ConditionExpression=absent) is None:
                return False
            self.table.conditional("put_item", Item=claim, ConditionExpression=absent)
            return True
        try:
            self.table.transact([
                {"Put": {"TableName": self.table.name, "Item": item, "ConditionExpression": absent}},
                {"Put": {"TableName": self.table.name, "Item": claim, "ConditionExpression": absent}},
            ])  # fmt: skip
        except Canceled as exc:
            if exc.is_condition:
                return False
            raise
        return True

    def _find_project(self, name: str) -> Project | None:
        claim = self.table.get(f"PROJECTNAME#{name}", "N")
        return self._get_project(claim["project_id"]["S"]) if claim else None

    def _get_project(self, project_id: str) -> Project | None:
        item = self.table.get(f"PROJECT#{project_id}", "P")
        if item is None:
            return None
        return Project(project_id, item["name"]["S"], int(item["created_at"]["N"]))

    def _list_projects(self, after: str | None, limit: int) -> list[Project]:
        condition, values = "gsi1pk = :p", {":p": s("PROJECTS")}
        if after:
            condition, values = condition + " AND gsi1sk > :a", {**values, ":a": s(after)}
        items = self.table.query(
            IndexName="gsi1", KeyConditionExpression=condition, ExpressionAttributeValues=values, Limit=limit
        )
        return [
            Project(item["gsi1sk"]["S"], item["name"]["S"], int(item["created_at"]["N"]))
            for item, _ in zip(items, range(limit), strict=False)
        ]

    def backfill_projects(self) -> Backfilled:
        """Put every project on gsi1 and claim its name, as ``_put_project`` does today (idempotent).

        Oldest first, so of two projects named alike before names were unique the first created
        keeps the name (as ``_find_project`` says); the other stays listed and usable by its id.
        Every write is conditional: a project created or deleted meanwhile is left as it is.
        """
        found = self.table.scan(
            FilterExpression="sk = :p AND begins_with(pk, :prefix)",
            ExpressionAttributeValues={":p": s("P"), ":prefix": s("PROJECT#")},
            ProjectionExpression="pk, #name, created_at, gsi1pk",
            ExpressionAttributeNames={"#name": "name"},
        )
        projects = sorted(
            (
                int(item["created_at"]["N"]),
                item["pk"]["S"].removeprefix("PROJECT#"),
                item["name"]["S"],
                "gsi1pk" in item,
            )
            for item in found
        )
        done = Backfilled()
        for _, project_id, name, listed in projects:
            if not listed and self.table.conditional(
                "update_item",
                Key={"pk": s(f"PROJECT#{project_id}"), "sk": s("P")},
                UpdateExpression="SET gsi1pk = :g, gsi1sk = :id",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(gsi1pk)",
                ExpressionAttributeValues={":g": s("PROJECTS"), ":id": s(project_id)},
            ):
                done.indexed.append(project_id)
            claim = {"pk": s(f"PROJECTNAME#{name}"), "sk": s("N"), "project_id": s(project_id)}
            if self.table.conditional("put_item", Item=claim, ConditionExpression="attribute_not_exists(pk)"):
                done.claimed.append(project_id)
        return done

    def _put_token(self, token: TokenRecord) -> None:
        item: dict[str, Any] = {
            "pk": s(f"TOKEN#{token.id}"),
            "sk": s("T"),
            "gsi1pk": s(f"TOKENS#{token.project_id}"),
            "gsi1sk": s(f"{token.created_at:015d}#{token.id}"),
            "project_id": s(token.project_id),
            "secret_hash": s(token.secret_hash),
            "scopes": s(dumps(token.scopes)),
            "environments": s(dumps(token.environments)),
            "created_at": n(token.created_at),
        }
        for name in ("expires_at", "last_used_at"):
            value = getattr(token, name)
            if value is not None:
                item[name] = n(value)
        if token.name is not None:
            item["name"] = s(token.name)
        self.table.put(item)

    @staticmethod
    def _token(item: dict[str, Any]) -> TokenRecord:
        return TokenRecord(
            id=item["pk"]["S"].removeprefix("TOKEN#"),
            project_id=item["project_id"]["S"],
            secret_hash=item["secret_hash"]["S"],
            scopes=json.loads(item["scopes"]["S"]),
            environments=json.loads(item["environments"]["S"]),
            created_at=int(item["created_at"]["N"]),
            expires_at=num(item, "expires_at"),
            last_used_at=num(item, "last_used_at"),
            name=string(item, "name"),
        )

    def _get_token(self, token_id: str) -> TokenRecord | None:
        item = self.table.get(f"TOKEN#{token_id}", "T")
        return self._token(item) if item else None

    def _list_tokens(self, project_id: str) -> list[TokenRecord]:
        items = self.table.query(
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :p",
            ExpressionAttributeValues={":p": s(f"TOKENS#{project_id}")},
        )
        return [self._token(item) for item in items]

    def _delete_token(self, token_id: str) -> bool:
        answer = self.table.delete({"pk": s(f"TOKEN#{token_id}"), "sk": s("T")}, ReturnValues="ALL_OLD")
        return bool(answer.get("Attributes"))

    def _touch_token(self, token_id: str, when: int) -> None:
        self.table.conditional(
            "update_item",
            Key={"pk": s(f"TOKEN#{token_id}"), "sk": s("T")},
            UpdateExpression="SET last_used_at = :w",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":w": n(when)},
        )
