"""The DynamoDB table every repository of the AWS backend shares: client, conditional writes,
transactions, queries, packed JSON (inline, or in the outputs bucket when too large), key helpers."""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator
from typing import Any

from hatchway.aws.clients import AwsClients, translate
from hatchway.errors import InternalError

#: an item's packed JSON larger than this goes to S3 (the item limit is 400 KB, GSIs copy runs)
INLINE_BYTES = 300 * 1024
#: DynamoDB transactions: 100 items and 4 MB at most
TRANSACTION_ITEMS = 100
TRANSACTION_BYTES = 3 * 1024 * 1024
MAX_SEQ = 10**12 - 1
WHAT = "the DynamoDB table"

#: The table, as ``CreateTable`` takes it (``template.yaml`` declares the same; a test compares them).
TABLE_SCHEMA: dict[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": name, "AttributeType": "S"} for name in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")
    ],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": index,
            "KeySchema": [
                {"AttributeName": f"{index}pk", "KeyType": "HASH"},
                {"AttributeName": f"{index}sk", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
        for index in ("gsi1", "gsi2")
    ],
    "BillingMode": "PAY_PER_REQUEST",
}
TTL_ATTRIBUTE = "expiration"


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


def num(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name)
    return int(value["N"]) if value is not None and "N" in value else None


def string(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value is not None and "S" in value else None


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def expiration(expires_at_ms: int, extra_seconds: int = 0) -> dict[str, str]:
    """The TTL attribute for an expiry in epoch milliseconds: DynamoDB's TTL reads epoch seconds.
    TTL deletes lazily (hours); the rules compare ``expires_at``, TTL only cleans up."""
    return n(expires_at_ms // 1000 + 1 + extra_seconds)


class Canceled(Exception):
    """A transaction was cancelled: ``conflict`` (retry) or a failed condition."""

    def __init__(self, is_condition: bool) -> None:
        super().__init__("transaction cancelled")
        self.is_condition = is_condition


class Table:
    """One table (and the outputs bucket for records too large for an item)."""

    def __init__(
        self,
        name: str,
        aws: AwsClients | None = None,
        bucket: str | None = None,
        queue_shards: int = 1,
        blob_prefix: str = "",
    ) -> None:
        self.name = name
        self.aws = aws or AwsClients()
        self.bucket = bucket
        self.queue_shards = max(1, queue_shards)
        self.blob_prefix = blob_prefix

    @property
    def db(self) -> Any:
        return self.aws.client("dynamodb")

    def create(self, wait: bool = True) -> bool:
        """Create the table (and enable TTL) if it does not exist; True if it was created."""
        with translate(WHAT):
            try:
                self.db.create_table(TableName=self.name, **TABLE_SCHEMA)
            except self.db.exceptions.ResourceInUseException:
                return False
            if wait:
                self.db.get_waiter("table_exists").wait(TableName=self.name, WaiterConfig={"Delay": 1})
            self.db.update_time_to_live(
                TableName=self.name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
            )
        return True

    def ping(self) -> None:
        with translate(WHAT):
            self.db.describe_table(TableName=self.name)

    def shard(self, key: str) -> int:
        """The queue shard of a run or execution (its partition of the second index)."""
        return int(hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:6], 16) % self.queue_shards

    # ---- reads and writes ------------------------------------------------------------------

    def get(self, pk: str, sk: str) -> dict[str, Any] | None:
        with translate(WHAT):
            answer = self.db.get_item(TableName=self.name, Key={"pk": s(pk), "sk": s(sk)}, ConsistentRead=True)
        item: dict[str, Any] | None = answer.get("Item")
        return item

    def put(self, item: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """An unconditional ``PutItem``; its answer."""
        with translate(WHAT):
            answer: dict[str, Any] = self.db.put_item(TableName=self.name, Item=item, **kwargs)
        return answer

    def update(self, key: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """An unconditional ``UpdateItem``; its answer."""
        with translate(WHAT):
            answer: dict[str, Any] = self.db.update_item(TableName=self.name, Key=key, **kwargs)
        return answer

    def delete(self, key: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """An unconditional ``DeleteItem``; its answer."""
        with translate(WHAT):
            answer: dict[str, Any] = self.db.delete_item(TableName=self.name, Key=key, **kwargs)
        return answer

    def conditional(self, operation: str, **kwargs: Any) -> dict[str, Any] | None:
        """Run a conditional write; its answer, or None if its condition failed."""
        return self.attempt(operation, **kwargs)[0]

    def attempt(self, operation: str, **kwargs: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Run a conditional write: ``(answer, None)`` when it is written, ``(None, item)`` when its
        condition failed - ``item`` being what is in the way if the write asked for it
        (``ReturnValuesOnConditionCheckFailure="ALL_OLD"``) and there is one."""
        with translate(WHAT):
            try:
                answer: dict[str, Any] = getattr(self.db, operation)(TableName=self.name, **kwargs)
            except self.db.exceptions.ConditionalCheckFailedException as exc:
                old: dict[str, Any] | None = exc.response.get("Item")
                return None, old
        return answer, None

    def swap(self, item: dict[str, Any], expected_rev: int, old: bool = False) -> tuple[bool, dict[str, Any] | None]:
        """Replace a whole record if its revision is still ``expected_rev`` (its old blob goes).
        With ``old``, a failed swap answers the record as it is now (None if there is none)."""
        extra = {"ReturnValuesOnConditionCheckFailure": "ALL_OLD"} if old else {}
        answer, current = self.attempt(
            "put_item",
            Item=item,
            ConditionExpression="rev = :e",
            ExpressionAttributeValues={":e": n(expected_rev)},
            ReturnValues="ALL_OLD",
            **extra,
        )
        if answer is None:
            self.drop_blob(item)
            return False, current
        self.drop_blob(answer.get("Attributes"), keep=item)
        return True, None

    def transact(self, items: list[dict[str, Any]]) -> None:
        """One ``TransactWriteItems``; raises :class:`Canceled` when it does not commit."""
        with translate(WHAT):
            try:
                self.db.transact_write_items(TransactItems=items)
            except self.db.exceptions.TransactionCanceledException as exc:
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
                raise Canceled("ConditionalCheckFailed" in reasons or not reasons) from exc
            except self.db.exceptions.TransactionConflictException as exc:
                raise Canceled(False) from exc

    def query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item of a query, page after page (the caller stops when it has enough)."""
        kwargs = {"TableName": self.name, **kwargs}
        while True:
            with translate(WHAT):
                page = self.db.query(**kwargs)
            yield from page.get("Items", [])
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def scan(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item of a scan, page after page (for migrations only: it reads the whole table)."""
        kwargs = {"TableName": self.name, **kwargs}
        while True:
            with translate(WHAT):
                page = self.db.scan(**kwargs)
            yield from page.get("Items", [])
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def between(self, pk: str, low: str, high: str, limit: int, newest_first: bool = False) -> list[dict[str, Any]]:
        """Up to ``limit`` items of one partition with ``low <= sk <= high``, strongly consistent."""
        items = self.query(
            KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={":p": s(pk), ":lo": s(low), ":hi": s(high)},
            ScanIndexForward=not newest_first,
            ConsistentRead=True,
            Limit=limit,
        )
        return take(items, limit)

    # ---- packed JSON (inline, or in S3 when too large) -------------------------------------

    def pack(self, value: Any, key: str) -> dict[str, Any]:
        raw = zlib.compress(dumps(value).encode(), 6)
        if len(raw) <= INLINE_BYTES:
            return {"data": {"B": raw}}
        if not self.bucket:
            raise InternalError("a record is larger than a DynamoDB item and no outputs bucket is configured")
        with translate("the outputs bucket"):
            self.aws.client("s3").put_object(Bucket=self.bucket, Key=self.blob_prefix + key, Body=raw)
        return {"data_ref": s(self.blob_prefix + key)}

    def unpack(self, item: dict[str, Any]) -> Any:
        if "data" in item:
            raw = item["data"]["B"]
        else:
            with translate("the outputs bucket"):
                raw = self.aws.client("s3").get_object(Bucket=self.bucket, Key=item["data_ref"]["S"])["Body"].read()
        return json.loads(zlib.decompress(raw))

    def drop_blob(self, item: dict[str, Any] | None, keep: dict[str, Any] | None = None) -> None:
        ref = string(item or {}, "data_ref")
        if ref and ref != string(keep or {}, "data_ref") and self.bucket:
            with translate("the outputs bucket"):
                self.aws.client("s3").delete_object(Bucket=self.bucket, Key=ref)


def take(items: Iterator[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    out = []
    for item in items:
        out.append(item)
        if len(out) >= limit:
            break
    return out
