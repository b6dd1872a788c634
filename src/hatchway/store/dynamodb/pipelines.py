"""Pipelines on DynamoDB: definition versions behind a head moved in one transaction, executions
written whole with compare-and-set on ``rev``.

pipeline head      ``PIPELINES#<p>#<env>`` / ``H#<name>``
pipeline version   ``PIPELINE#<p>#<env>#<n>`` / ``V#<version:010d>``
execution          ``EXEC#<id>`` / ``E``; gsi1 ``EXECS#<p>#<env>#<pipeline>``, id; gsi2 ``EXECUTING#<shard>``,
                   engine#id while it has not ended (the advancer's scan), then ``EXECUTED#<p>#<env>``, id
"""

from __future__ import annotations

import uuid
from typing import Any

from hatchway.domain.pipelines.records import Execution, PipelineHead, PipelineRecord
from hatchway.domain.records import MAX_PAGE
from hatchway.errors import ValidationFailed
from hatchway.store.dynamodb._table import Canceled, Table, n, s, string, take
from hatchway.store.pipelines import BasePipelineRepo


class DynamoDbPipelineRepo(BasePipelineRepo):
    def __init__(self, table: Table) -> None:
        self.table = table

    def _get_pipeline_head(self, project_id: str, environment: str, name: str) -> PipelineHead | None:
        item = self.table.get(f"PIPELINES#{project_id}#{environment}", f"H#{name}")
        return self._pipeline_head(project_id, environment, item) if item else None

    @staticmethod
    def _pipeline_head(project_id: str, environment: str, item: dict[str, Any]) -> PipelineHead:
        return PipelineHead(
            project_id,
            environment,
            item["sk"]["S"].removeprefix("H#"),
            int(item["latest_version"]["N"]),
            bool(item.get("deleted", {}).get("BOOL", False)),
        )

    def _put_pipeline_version(self, record: PipelineRecord, head: PipelineHead, expected_latest: int | None) -> bool:
        head_item = {
            "pk": s(f"PIPELINES#{record.project_id}#{record.environment}"),
            "sk": s(f"H#{head.name}"),
            "latest_version": n(head.latest_version),
            "deleted": {"BOOL": False},
        }
        if expected_latest is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {
                "ConditionExpression": "latest_version = :e",
                "ExpressionAttributeValues": {":e": n(expected_latest)},
            }
        version_item: dict[str, Any] = {
            "pk": s(f"PIPELINE#{record.project_id}#{record.environment}#{record.name}"),
            "sk": s(f"V#{record.version:010d}"),
            "version": n(record.version),
            "digest": s(record.digest),
            "created_at": n(record.created_at),
            **self.table.pack(record.spec, f"pipelines/{record.digest.removeprefix('sha256:')}.json.z"),
        }
        if record.engine_ref is not None:
            version_item["engine_ref"] = s(record.engine_ref)
        try:
            self.table.transact(
                [
                    {"Put": {"TableName": self.table.name, "Item": head_item, **condition}},
                    {
                        "Put": {
                            "TableName": self.table.name,
                            "Item": version_item,
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except Canceled:
            return False
        return True

    def _get_pipeline_version(
        self, project_id: str, environment: str, name: str, version: int
    ) -> PipelineRecord | None:
        item = self.table.get(f"PIPELINE#{project_id}#{environment}#{name}", f"V#{version:010d}")
        if item is None:
            return None
        return PipelineRecord(
            project_id,
            environment,
            name,
            int(item["version"]["N"]),
            item["digest"]["S"],
            int(item["created_at"]["N"]),
            self.table.unpack(item),
            string(item, "engine_ref"),
        )

    def _list_pipeline_heads(
        self, project_id: str, environment: str, after: str | None, limit: int
    ) -> list[PipelineHead]:
        if after is not None and not isinstance(after, str):
            raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued")
        items = self.table.query(
            KeyConditionExpression="pk = :p AND sk > :a",
            FilterExpression="deleted = :f",
            ExpressionAttributeValues={
                ":p": s(f"PIPELINES#{project_id}#{environment}"),
                ":a": s(f"H#{after or ''}"),
                ":f": {"BOOL": False},
            },
            ConsistentRead=True,
            Limit=max(limit, 25),
        )
        return [self._pipeline_head(project_id, environment, item) for item in take(items, limit)]

    def _set_pipeline_head_deleted(self, project_id: str, environment: str, name: str) -> bool:
        answer = self.table.conditional(
            "update_item",
            Key={"pk": s(f"PIPELINES#{project_id}#{environment}"), "sk": s(f"H#{name}")},
            UpdateExpression="SET deleted = :t",
            ConditionExpression="deleted = :f",
            ExpressionAttributeValues={":t": {"BOOL": True}, ":f": {"BOOL": False}},
        )
        return answer is not None

    def _execution_item(self, execution: Execution, rev: int) -> dict[str, Any]:
        tenant = f"{execution.project_id}#{execution.environment}"
        item: dict[str, Any] = {
            "pk": s(f"EXEC#{execution.id}"),
            "sk": s("E"),
            "rev": n(rev),
            "status": s(execution.status.value),
            "engine": s(execution.engine),
            "project_id": s(execution.project_id),
            "environment": s(execution.environment),
            "pipeline": s(execution.pipeline),
            "gsi1pk": s(f"EXECS#{tenant}#{execution.pipeline}"),
            "gsi1sk": s(execution.id),
            **self.table.pack(execution.to_dict(), f"executions/{execution.id}/{uuid.uuid4().hex}.json.z"),
        }
        if execution.is_terminal:
            item["gsi2pk"] = s(f"EXECUTED#{tenant}")
            item["gsi2sk"] = s(execution.id)
        else:
            item["gsi2pk"] = s(f"EXECUTING#{self.table.shard(execution.id)}")
            item["gsi2sk"] = s(f"{execution.engine}#{execution.id}")
        return item

    def _insert_execution(self, execution: Execution) -> bool:
        item = self._execution_item(execution, 0)
        if self.table.conditional("put_item", Item=item, ConditionExpression="attribute_not_exists(pk)") is None:
            self.table.drop_blob(item)
            return False
        return True

    def _get_execution(self, execution_id: str) -> tuple[Execution, int] | None:
        item = self.table.get(f"EXEC#{execution_id}", "E")
        if item is None:
            return None
        return Execution.from_dict(self.table.unpack(item)), int(item["rev"]["N"])

    def _replace_execution(self, execution: Execution, expected_rev: int) -> bool:
        return self.table.swap(self._execution_item(execution, expected_rev + 1), expected_rev)[0]

    def _list_executions(
        self, project_id: str, environment: str, pipeline: str | None, before: str | None, limit: int,
        status: str | None,
    ) -> list[Execution]:  # fmt: skip
        if before is not None and not isinstance(before, str):
            raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued")
        tenant = f"{project_id}#{environment}"
        below = before or "pex_~"
        where = {"#st = :st": {":st": s(status)}} if status else {}
        if pipeline is not None:
            return self._executions(f"EXECS#{tenant}#{pipeline}", "gsi1", below, limit, where)
        # The tenant's ended executions have a partition of their own; those still going are the
        # few in the EXECUTING partitions (every tenant's), read with a filter and merged in.
        found = self._executions(f"EXECUTED#{tenant}", "gsi2", below, limit, where)
        running = {
            "#p = :p AND #e = :e AND gsi1sk < :b": {":p": s(project_id), ":e": s(environment), ":b": s(below)},
            **where,
        }
        for shard in range(self.table.queue_shards):
            # ordered by engine first, so all of them (executions that have not ended are few)
            found += self._executions(f"EXECUTING#{shard}", "gsi2", None, MAX_PAGE * 2, running)
        unique = {execution.id: execution for execution in found}
        return sorted(unique.values(), key=lambda execution: execution.id, reverse=True)[:limit]

    def _executions(
        self, partition: str, index: str, below: str | None, limit: int, where: dict[str, dict[str, Any]]
    ) -> list[Execution]:
        """Up to ``limit`` executions of one index partition, newest first, matching ``where``."""
        values: dict[str, Any] = {":k": s(partition)}
        condition = f"{index}pk = :k"
        if below is not None:
            condition += f" AND {index}sk < :below"
            values[":below"] = s(below)
        query: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ScanIndexForward": False,
            "Limit": max(limit, 25),
        }
        if where:
            for extra in where.values():
                values.update(extra)
            query["FilterExpression"] = " AND ".join(where)
            query["ExpressionAttributeNames"] = {
                name: attribute
                for name, attribute in (("#st", "status"), ("#p", "project_id"), ("#e", "environment"))
                if any(name in clause for clause in where)
            }
        items = self.table.query(ExpressionAttributeValues=values, **query)
        return [Execution.from_dict(self.table.unpack(item)) for item in take(items, limit)]

    def _active_executions(self, engine: str, limit: int) -> list[Execution]:
        found: list[Execution] = []
        for shard in range(self.table.queue_shards):
            items = self.table.query(
                IndexName="gsi2",
                KeyConditionExpression="gsi2pk = :k AND begins_with(gsi2sk, :engine)",
                ExpressionAttributeValues={":k": s(f"EXECUTING#{shard}"), ":engine": s(f"{engine}#")},
                Limit=max(limit, 25),
            )
            found += [Execution.from_dict(self.table.unpack(item)) for item in take(items, limit)]
        # an index is eventually consistent: drop what it still shows after the execution ended
        active = [execution for execution in found if not execution.is_terminal]
        return sorted(active, key=lambda execution: execution.id)[:limit]
