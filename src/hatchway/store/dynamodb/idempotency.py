"""Idempotency keys on DynamoDB: ``IDEM#<sha256(scope)>`` / ``I``, removed by TTL (``expiration``).

Written the way powertools' ``DynamoDBPersistenceLayer`` does - a conditional put on
``attribute_not_exists``, an in-progress expiry that a retry may take over, the TTL attribute - and,
like it, with ``ReturnValuesOnConditionCheckFailure="ALL_OLD"``, so a failed claim answers the
record in the way without a second read. Powertools' utility itself is not used because it wraps a
whole function call and cannot keep the first request's run id when it takes over a key left in
progress by a crashed request, which is what prevents a duplicated run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hatchway.domain.records import IdempotencyRecord
from hatchway.store.dynamodb._table import TTL_ATTRIBUTE, Table, dumps, expiration, n, num, s, string
from hatchway.store.idempotency import BaseIdempotencyRepo

#: an in-progress key lives an hour past its expiry before TTL may remove it
_IN_PROGRESS_GRACE_SECONDS = 3600


class DynamoDbIdempotencyRepo(BaseIdempotencyRepo):
    def __init__(self, table: Table) -> None:
        self.table = table

    @staticmethod
    def _idem_key(scope: str) -> dict[str, Any]:
        return {"pk": s("IDEM#" + hashlib.sha256(scope.encode()).hexdigest()), "sk": s("I")}

    @staticmethod
    def _record(item: dict[str, Any]) -> IdempotencyRecord:
        response = string(item, "response")
        return IdempotencyRecord(
            scope=item["scope"]["S"],
            request_hash=item["request_hash"]["S"],
            run_id=item["run_id"]["S"],
            status=item["status"]["S"],
            expires_at=int(item["expires_at"]["N"]),
            response=json.loads(response) if response is not None else None,
            response_code=num(item, "response_code"),
        )

    def _get_idempotency(self, scope: str) -> IdempotencyRecord | None:
        key = self._idem_key(scope)
        item = self.table.get(key["pk"]["S"], key["sk"]["S"])
        return self._record(item) if item is not None else None

    def _put_idempotency(
        self, record: IdempotencyRecord, replace_expired_before: int | None
    ) -> tuple[bool, IdempotencyRecord | None]:
        key = self._idem_key(record.scope)
        ttl = expiration(record.expires_at, _IN_PROGRESS_GRACE_SECONDS)
        if replace_expired_before is None:
            item = {
                **key,
                "scope": s(record.scope),
                "request_hash": s(record.request_hash),
                "run_id": s(record.run_id),
                "status": s(record.status),
                "expires_at": n(record.expires_at),
                TTL_ATTRIBUTE: ttl,
            }
            answer, holder = self.table.attempt(
                "put_item",
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        else:
            answer, holder = self.table.attempt(
                "update_item",
                Key=key,
                UpdateExpression="SET expires_at = :e, #ttl = :ttl",
                ConditionExpression="#st = :ip AND expires_at < :t",
                ExpressionAttributeNames={"#st": "status", "#ttl": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":e": n(record.expires_at),
                    ":ttl": ttl,
                    ":ip": s("INPROGRESS"),
                    ":t": n(replace_expired_before),
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        if answer is not None:
            return True, None
        return False, self._record(holder) if holder else None

    def _complete_idempotency(self, record: IdempotencyRecord) -> None:
        self.table.update(
            self._idem_key(record.scope),
            UpdateExpression="SET #st = :s, expires_at = :e, #resp = :r, response_code = :c, #ttl = :ttl",
            ExpressionAttributeNames={"#st": "status", "#resp": "response", "#ttl": TTL_ATTRIBUTE},
            ExpressionAttributeValues={
                ":s": s(record.status),
                ":e": n(record.expires_at),
                ":r": s(dumps(record.response)),
                ":c": n(record.response_code or 0),
                ":ttl": expiration(record.expires_at),
            },
        )

    def _delete_idempotency(self, scope: str) -> None:
        self.table.delete(self._idem_key(scope))
