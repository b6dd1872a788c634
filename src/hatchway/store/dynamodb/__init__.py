"""DynamoDB primitives for :class:`~hatchway.store.runs.BaseStore` (the AWS backend).

One table, keys ``pk``/``sk``, two overloaded sparse GSIs, on-demand capacity:

===============  =========================  =====================  ===================================
item             pk                         sk                     index keys
===============  =========================  =====================  ===================================
project          ``PROJECT#<id>``           ``P``
token            ``TOKEN#<id>``             ``T``                  gsi1 ``TOKENS#<project>``, created#id
action head      ``ACTIONS#<p>#<env>``      ``H#<name>``           (embeds the latest version)
action version   ``ACTION#<p>#<env>#<n>``   ``V#<version:010d>``
digest pointer   ``ACTION#<p>#<env>#<n>``   ``D#<digest>``         (embeds that version)
run              ``RUN#<id>``               ``R``                  gsi1 ``RUNS#<p>#<env>``, id;
                                                                   gsi2 ``READY#<s>``, available_at#id
                                                                   or ``LEASE#<s>``, lease_until#id
                                                                   or ``HELD#<s>``, id
log sequence     ``RUN#<id>``               ``LSEQ``
log page         ``RUN#<id>``               ``L#<last seq:012d>``  (consecutive entries, compressed)
idempotency key  ``IDEM#<sha256(scope)>``   ``I``                  TTL attribute ``expiration``
document         ``DOC#<p>#<env>#<kind>``   ``N#<name>``           TTL attribute ``expiration``
pipeline head    ``PIPELINES#<p>#<env>``    ``H#<name>``
pipeline vers.   ``PIPELINE#<p>#<env>#<n>`` ``V#<version:010d>``
execution        ``EXEC#<id>``              ``E``                  gsi1 ``EXECS#<p>#<env>#<pipeline>``, id;
                                                                   gsi2 ``EXECUTING#<s>``, engine#id
                                                                   or ``EXECUTED#<p>#<env>``, id
===============  =========================  =====================  ===================================

Every status change is a ``PutItem`` conditioned on the run's revision (``rev = :expected``), so
concurrent workers, the event handler and container adapters never both win. A run sits in
``gsi2`` only while it has not ended: claimable (``READY``: ENQUEUED, async, not handed to
Batch/ECS), leased (``LEASE``), or held outside the gateway's queue (``HELD``: a Batch job or ECS
task holds it), so the queue, the lease sweeper, the remote sweeper
and the dashboard's counts of unfinished runs read small sparse indexes. A run item also keeps the
few fields statistics need as plain attributes, so the dashboard reads a tenant's recent runs
with a projection instead of whole records. The head of an action embeds its latest version:
resolving an action is one ``GetItem``. A finished sync call is written with its log in one
``TransactWriteItems`` (:meth:`_begin_sync` writes nothing). Log entries are numbered by a counter
item moved in the same transaction that writes them, in pages of consecutive entries (one item
per flush, usually), so a follower never sees a gap that fills in later. Pipelines follow the
same discipline: definition versions behind a head moved in one transaction, executions written
whole with compare-and-set on ``rev``; an execution sits in ``gsi2`` under ``EXECUTING`` while it
has not ended (the advancer's scan) and under its tenant's ``EXECUTED`` once it has. Records and
specs are stored as zlib-compressed JSON; one too large for an item (400 KB) goes to the outputs
bucket and the item keeps its key. Idempotency keys and expiring documents are removed by
DynamoDB TTL.

Idempotency: the rules live in :class:`BaseStore` (shared with SQLite and checked by one contract
suite), and this backend writes them the way powertools' ``DynamoDBPersistenceLayer`` does - a
conditional put on ``attribute_not_exists``, an in-progress expiry that a retry may take over, and
the TTL attribute ``expiration``. Powertools' utility itself is not used because it wraps a whole
function call and cannot keep the first request's run id when it takes over a key left in progress
by a crashed request, which is what prevents a duplicated run.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
import zlib
from collections import Counter, OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hatchway.aws.clients import AwsClients, translate
from hatchway.domain.actions import ActionHead, ActionRecord
from hatchway.domain.pipelines.records import Execution, PipelineHead, PipelineRecord
from hatchway.domain.records import MAX_PAGE, Document, IdempotencyRecord
from hatchway.domain.runs import (
    ActiveCount,
    LogEntry,
    Mode,
    Run,
    RunStatus,
    RunSummary,
    run_from_dict,
    run_id_floor,
    run_to_dict,
)
from hatchway.domain.tenants import Project, TokenRecord
from hatchway.errors import InternalError, ValidationFailed
from hatchway.store.runs import BaseStore

if TYPE_CHECKING:
    from hatchway.config import Settings

#: an item's packed JSON larger than this goes to S3 (the item limit is 400 KB, GSIs copy runs)
INLINE_BYTES = 300 * 1024
#: DynamoDB transactions: 100 items and 4 MB at most
TRANSACTION_ITEMS = 100
TRANSACTION_BYTES = 3 * 1024 * 1024
#: log entries are stored in pages (one item per flush, usually), each under this raw size
LOG_PAGE_BYTES = 256 * 1024
LOG_PAGE_ENTRIES = 5000
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


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


def _num(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name)
    return int(value["N"]) if value is not None and "N" in value else None


def _str(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value is not None and "S" in value else None


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _Canceled(Exception):
    """A transaction was cancelled: ``conflict`` (retry) or a failed condition."""

    def __init__(self, is_condition: bool) -> None:
        super().__init__("transaction cancelled")
        self.is_condition = is_condition


class DynamoDbStore(BaseStore):
    """The AWS backend's store: one DynamoDB table (and the outputs bucket for large records)."""

    def __init__(
        self,
        table_name: str,
        aws: AwsClients | None = None,
        bucket: str | None = None,
        queue_shards: int = 1,
        blob_prefix: str = "",
    ) -> None:
        self.table = table_name
        self.aws = aws or AwsClients()
        self.bucket = bucket
        self.queue_shards = max(1, queue_shards)
        self.blob_prefix = blob_prefix
        self._log_seq: OrderedDict[str, int] = OrderedDict()
        self._log_seq_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, aws: AwsClients | None = None, **clients: Any) -> DynamoDbStore:
        session = clients.pop("session", None)
        aws = aws or AwsClients.from_settings(settings, session, **clients)
        return cls(settings.table_name, aws, settings.outputs_bucket, blob_prefix="records/")

    @property
    def db(self) -> Any:
        return self.aws.client("dynamodb")

    # ---- set-up ----------------------------------------------------------------------------

    def create_table(self, wait: bool = True) -> bool:
        """Create the table (and enable TTL) if it does not exist; True if it was created."""
        with translate(WHAT):
            try:
                self.db.create_table(TableName=self.table, **TABLE_SCHEMA)
            except self.db.exceptions.ResourceInUseException:
                return False
            if wait:
                self.db.get_waiter("table_exists").wait(TableName=self.table, WaiterConfig={"Delay": 1})
            self.db.update_time_to_live(
                TableName=self.table, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
            )
        return True

    def ping(self) -> None:
        with translate(WHAT):
            self.db.describe_table(TableName=self.table)

    # ---- low-level helpers -----------------------------------------------------------------

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        with translate(WHAT):
            answer = self.db.get_item(TableName=self.table, Key={"pk": _s(pk), "sk": _s(sk)}, ConsistentRead=True)
        item: dict[str, Any] | None = answer.get("Item")
        return item

    def _conditional(self, operation: str, **kwargs: Any) -> dict[str, Any] | None:
        """Run a conditional write; None if its condition failed."""
        with translate(WHAT):
            try:
                answer: dict[str, Any] = getattr(self.db, operation)(TableName=self.table, **kwargs)
            except self.db.exceptions.ConditionalCheckFailedException:
                return None
        return answer

    def _transact(self, items: list[dict[str, Any]]) -> None:
        """One ``TransactWriteItems``; raises :class:`_Canceled` when it does not commit."""
        with translate(WHAT):
            try:
                self.db.transact_write_items(TransactItems=items)
            except self.db.exceptions.TransactionCanceledException as exc:
                reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
                raise _Canceled("ConditionalCheckFailed" in reasons or not reasons) from exc
            except self.db.exceptions.TransactionConflictException as exc:
                raise _Canceled(False) from exc

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item of a query, page after page (the caller stops when it has enough)."""
        kwargs = {"TableName": self.table, **kwargs}
        while True:
            with translate(WHAT):
                page = self.db.query(**kwargs)
            yield from page.get("Items", [])
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def _between(self, pk: str, low: str, high: str, limit: int, newest_first: bool = False) -> list[dict[str, Any]]:
        """Up to ``limit`` items of one partition with ``low <= sk <= high``, strongly consistent."""
        items = self._query(
            KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={":p": _s(pk), ":lo": _s(low), ":hi": _s(high)},
            ScanIndexForward=not newest_first,
            ConsistentRead=True,
            Limit=limit,
        )
        return self._take(items, limit)

    def _take(self, items: Iterator[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
        out = []
        for item in items:
            out.append(item)
            if len(out) >= limit:
                break
        return out

    # ---- packed JSON (inline, or in S3 when too large) -------------------------------------

    def _pack(self, value: Any, key: str) -> dict[str, Any]:
        raw = zlib.compress(_dumps(value).encode(), 6)
        if len(raw) <= INLINE_BYTES:
            return {"data": {"B": raw}}
        if not self.bucket:
            raise InternalError("a record is larger than a DynamoDB item and no outputs bucket is configured")
        with translate("the outputs bucket"):
            self.aws.client("s3").put_object(Bucket=self.bucket, Key=self.blob_prefix + key, Body=raw)
        return {"data_ref": _s(self.blob_prefix + key)}

    def _unpack(self, item: dict[str, Any]) -> Any:
        if "data" in item:
            raw = item["data"]["B"]
        else:
            with translate("the outputs bucket"):
                raw = self.aws.client("s3").get_object(Bucket=self.bucket, Key=item["data_ref"]["S"])["Body"].read()
        return json.loads(zlib.decompress(raw))

    def _drop_blob(self, item: dict[str, Any] | None, keep: dict[str, Any] | None = None) -> None:
        ref = _str(item or {}, "data_ref")
        if ref and ref != _str(keep or {}, "data_ref") and self.bucket:
            with translate("the outputs bucket"):
                self.aws.client("s3").delete_object(Bucket=self.bucket, Key=ref)

    # ---- projects and tokens ---------------------------------------------------------------

    def _put_project(self, project: Project) -> bool:
        item = {
            "pk": _s(f"PROJECT#{project.id}"),
            "sk": _s("P"),
            "name": _s(project.name),
            "created_at": _n(project.created_at),
        }
        return self._conditional("put_item", Item=item, ConditionExpression="attribute_not_exists(pk)") is not None

    def _get_project(self, project_id: str) -> Project | None:
        item = self._get(f"PROJECT#{project_id}", "P")
        if item is None:
            return None
        return Project(project_id, item["name"]["S"], int(item["created_at"]["N"]))

    def _put_token(self, token: TokenRecord) -> None:
        item: dict[str, Any] = {
            "pk": _s(f"TOKEN#{token.id}"),
            "sk": _s("T"),
            "gsi1pk": _s(f"TOKENS#{token.project_id}"),
            "gsi1sk": _s(f"{token.created_at:015d}#{token.id}"),
            "project_id": _s(token.project_id),
            "secret_hash": _s(token.secret_hash),
            "scopes": _s(_dumps(token.scopes)),
            "environments": _s(_dumps(token.environments)),
            "created_at": _n(token.created_at),
        }
        for name in ("expires_at", "last_used_at"):
            value = getattr(token, name)
            if value is not None:
                item[name] = _n(value)
        if token.name is not None:
            item["name"] = _s(token.name)
        with translate(WHAT):
            self.db.put_item(TableName=self.table, Item=item)

    @staticmethod
    def _token(item: dict[str, Any]) -> TokenRecord:
        return TokenRecord(
            id=item["pk"]["S"].removeprefix("TOKEN#"),
            project_id=item["project_id"]["S"],
            secret_hash=item["secret_hash"]["S"],
            scopes=json.loads(item["scopes"]["S"]),
            environments=json.loads(item["environments"]["S"]),
            created_at=int(item["created_at"]["N"]),
            expires_at=_num(item, "expires_at"),
            last_used_at=_num(item, "last_used_at"),
            name=_str(item, "name"),
        )

    def _get_token(self, token_id: str) -> TokenRecord | None:
        item = self._get(f"TOKEN#{token_id}", "T")
        return self._token(item) if item else None

    def _list_tokens(self, project_id: str) -> list[TokenRecord]:
        items = self._query(
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :p",
            ExpressionAttributeValues={":p": _s(f"TOKENS#{project_id}")},
        )
        return [self._token(item) for item in items]

    def _delete_token(self, token_id: str) -> bool:
        with translate(WHAT):
            answer = self.db.delete_item(
                TableName=self.table, Key={"pk": _s(f"TOKEN#{token_id}"), "sk": _s("T")}, ReturnValues="ALL_OLD"
            )
        return bool(answer.get("Attributes"))

    def _touch_token(self, token_id: str, when: int) -> None:
        self._conditional(
            "update_item",
            Key={"pk": _s(f"TOKEN#{token_id}"), "sk": _s("T")},
            UpdateExpression="SET last_used_at = :w",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":w": _n(when)},
        )

    # ---- actions ---------------------------------------------------------------------------

    def _version_item(self, record: ActionRecord, pk: str, sk: str) -> dict[str, Any]:
        return {
            "pk": _s(pk),
            "sk": _s(sk),
            "version": _n(record.version),
            "digest": _s(record.digest),
            "created_at": _n(record.created_at),
            **self._pack(record.spec, f"specs/{record.digest.removeprefix('sha256:')}.json.z"),
        }

    def _record(self, project_id: str, environment: str, name: str, item: dict[str, Any]) -> ActionRecord:
        return ActionRecord(
            project_id=project_id,
            environment=environment,
            name=name,
            version=int(item["version"]["N"]),
            digest=item["digest"]["S"],
            created_at=int(item["created_at"]["N"]),
            spec=self._unpack(item),
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
        item = self._get(f"ACTIONS#{project_id}#{environment}", f"H#{name}")
        return self._head(project_id, environment, item) if item else None

    def _put_version(self, record: ActionRecord, head: ActionHead, expected_latest: int | None) -> bool:
        versions = f"ACTION#{record.project_id}#{record.environment}#{record.name}"
        head_item = self._version_item(record, f"ACTIONS#{record.project_id}#{record.environment}", f"H#{head.name}")
        head_item.update(
            {
                "latest_version": _n(head.latest_version),
                "tags": {"L": [_s(tag) for tag in head.tags]},
                "deleted": {"BOOL": False},
            }
        )
        if expected_latest is None:
            head_put: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            head_put = {
                "ConditionExpression": "latest_version = :e",
                "ExpressionAttributeValues": {":e": _n(expected_latest)},
            }
        items = [
            {"Put": {"TableName": self.table, "Item": head_item, **head_put}},
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self._version_item(record, versions, f"V#{record.version:010d}"),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {"Put": {"TableName": self.table, "Item": self._version_item(record, versions, f"D#{record.digest}")}},
        ]
        try:
            self._transact(items)
        except _Canceled:
            return False
        return True

    def _set_head_deleted(self, project_id: str, environment: str, name: str) -> bool:
        answer = self._conditional(
            "update_item",
            Key={"pk": _s(f"ACTIONS#{project_id}#{environment}"), "sk": _s(f"H#{name}")},
            UpdateExpression="SET deleted = :t",
            ConditionExpression="deleted = :f",
            ExpressionAttributeValues={":t": {"BOOL": True}, ":f": {"BOOL": False}},
        )
        return answer is not None

    def _get_version(self, project_id: str, environment: str, name: str, version: int) -> ActionRecord | None:
        item = self._get(f"ACTION#{project_id}#{environment}#{name}", f"V#{version:010d}")
        return self._record(project_id, environment, name, item) if item else None

    def _find_version_by_digest(self, project_id: str, environment: str, name: str, digest: str) -> ActionRecord | None:
        item = self._get(f"ACTION#{project_id}#{environment}#{name}", f"D#{digest}")
        return self._record(project_id, environment, name, item) if item else None

    def _list_heads(
        self, project_id: str, environment: str, after: str | None, limit: int, tag: str | None
    ) -> list[ActionHead]:
        if after is not None and not isinstance(after, str):
            raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued")
        values: dict[str, Any] = {":p": _s(f"ACTIONS#{project_id}#{environment}"), ":f": {"BOOL": False}}
        if after:
            condition = "pk = :p AND sk > :a"
            values[":a"] = _s(f"H#{after}")
        else:
            condition = "pk = :p AND begins_with(sk, :a)"
            values[":a"] = _s("H#")
        where = "deleted = :f"
        if tag:
            where += " AND contains(tags, :t)"
            values[":t"] = _s(tag)
        items = self._query(
            KeyConditionExpression=condition,
            FilterExpression=where,
            ExpressionAttributeValues=values,
            ConsistentRead=True,
            Limit=max(limit, 25),
        )
        return [self._head(project_id, environment, item) for item in self._take(items, limit)]

    def _list_versions(
        self, project_id: str, environment: str, name: str, before: int | None, limit: int
    ) -> list[ActionRecord]:
        if before is not None and (not isinstance(before, int) or isinstance(before, bool)):
            raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued")
        top = MAX_SEQ if before is None else before - 1
        if top < 1:
            return []
        pk = f"ACTION#{project_id}#{environment}#{name}"
        items = self._between(pk, f"V#{0:010d}", f"V#{min(top, 10**10 - 1):010d}", limit, newest_first=True)
        return [self._record(project_id, environment, name, item) for item in items]

    # ---- runs ------------------------------------------------------------------------------

    def _shard(self, run_id: str) -> int:
        return int(hashlib.sha1(run_id.encode(), usedforsecurity=False).hexdigest()[:6], 16) % self.queue_shards

    def _run_item(self, run: Run, rev: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": _s(f"RUN#{run.id}"),
            "sk": _s("R"),
            "rev": _n(rev),
            "status": _s(run.status.value),
            "mode": _s(run.mode.value),
            "project_id": _s(run.project_id),
            "environment": _s(run.environment),
            "action_name": _s(run.action_name),
            "available_at": _n(run.available_at),
            "invoked": _s(run.invoked),
            "created_at": _n(run.created_at),
            "gsi1pk": _s(f"RUNS#{run.project_id}#{run.environment}"),
            "gsi1sk": _s(run.id),
            **self._pack(run_to_dict(run), f"runs/{run.id}/{uuid.uuid4().hex}.json.z"),
        }
        for name in ("external_user_id", "lease_owner", "external_id"):
            value = getattr(run, name)
            if value is not None:
                item[name] = _s(value)
        for name in ("lease_until", "started_at", "finished_at", "duration_ms"):
            value = getattr(run, name)
            if value is not None:
                item[name] = _n(value)
        shard = self._shard(run.id)
        if run.status == RunStatus.ENQUEUED and run.mode == Mode.ASYNC and run.external_id is None:
            item["gsi2pk"] = _s(f"READY#{shard}")
            item["gsi2sk"] = _s(f"{run.available_at:015d}#{run.id}")
        elif run.status in (RunStatus.INPROGRESS, RunStatus.TERMINATING) and run.lease_until is not None:
            item["gsi2pk"] = _s(f"LEASE#{shard}")
            item["gsi2sk"] = _s(f"{run.lease_until:015d}#{run.id}")
        elif not run.is_terminal:
            item["gsi2pk"] = _s(f"HELD#{shard}")
            item["gsi2sk"] = _s(run.id)
        return item

    def _run(self, item: dict[str, Any]) -> Run:
        run = run_from_dict(self._unpack(item))
        # heartbeats update only the attribute; it wins over the packed copy
        run.lease_until = _num(item, "lease_until")
        return run

    def _insert_run(self, run: Run) -> bool:
        item = self._run_item(run, 0)
        if self._conditional("put_item", Item=item, ConditionExpression="attribute_not_exists(pk)") is None:
            self._drop_blob(item)
            return False
        return True

    def _get_run(self, run_id: str) -> tuple[Run, int] | None:
        item = self._get(f"RUN#{run_id}", "R")
        if item is None:
            return None
        return self._run(item), int(item["rev"]["N"])

    def _replace_run(self, run: Run, expected_rev: int) -> bool:
        return self._swap(self._run_item(run, expected_rev + 1), expected_rev)

    def _swap(self, item: dict[str, Any], expected_rev: int) -> bool:
        """Replace a whole record if its revision is still ``expected_rev`` (its old blob goes)."""
        answer = self._conditional(
            "put_item",
            Item=item,
            ConditionExpression="rev = :e",
            ExpressionAttributeValues={":e": _n(expected_rev)},
            ReturnValues="ALL_OLD",
        )
        if answer is None:
            self._drop_blob(item)
            return False
        self._drop_blob(answer.get("Attributes"), keep=item)
        return True

    def _list_runs(
        self, project_id: str, environment: str, before: str | None, limit: int, filters: dict[str, str]
    ) -> list[Run]:
        if before is not None and not isinstance(before, str):
            raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued")
        values: dict[str, Any] = {":p": _s(f"RUNS#{project_id}#{environment}"), ":b": _s(before or "run_~")}
        names: dict[str, str] = {}
        where = []
        for key, attribute in (
            ("action", "action_name"),
            ("status", "status"),
            ("external_user_id", "external_user_id"),
        ):
            if key in filters:
                names[f"#{key}"] = attribute
                values[f":{key}"] = _s(filters[key])
                where.append(f"#{key} = :{key}")
        query: dict[str, Any] = {
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :p AND gsi1sk < :b",
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "Limit": max(limit, 25),
        }
        if where:
            query["FilterExpression"] = " AND ".join(where)
            query["ExpressionAttributeNames"] = names
        return [self._run(item) for item in self._take(self._query(**query), limit)]

    def _queue(self, kind: str, below: str, limit: int, above: str | None = None) -> list[Run]:
        if above is not None and above >= below:
            return []  # (DynamoDB refuses BETWEEN with its bounds reversed)
        found: list[tuple[str, dict[str, Any]]] = []
        for shard in range(self.queue_shards):
            values = {":p": _s(f"{kind}#{shard}"), ":b": _s(below)}
            if above is None:
                condition = "gsi2pk = :p AND gsi2sk < :b"
            else:
                # a key condition has one range: BETWEEN is inclusive, so the bounds are dropped below
                condition = "gsi2pk = :p AND gsi2sk BETWEEN :a AND :b"
                values[":a"] = _s(above)
            items = self._query(
                IndexName="gsi2", KeyConditionExpression=condition, ExpressionAttributeValues=values, Limit=limit + 2
            )
            kept = (item for item in items if above is None or above < item["gsi2sk"]["S"] < below)
            found.extend((item["gsi2sk"]["S"], item) for item in self._take(kept, limit))
        found.sort(key=lambda pair: pair[0])
        return [self._run(item) for _, item in found[:limit]]

    def _ready_runs(self, now: int, limit: int) -> list[Run]:
        runs = self._queue("READY", f"{now:015d}~", limit)
        # an index is eventually consistent: drop what it still shows after the run moved on
        return [run for run in runs if run.status == RunStatus.ENQUEUED and run.available_at <= now]

    def _expired_leases(self, now: int, limit: int) -> list[Run]:
        return self._queue("LEASE", f"{now:015d}", limit)

    def _remote_runs(self, created_before: int, limit: int, after: str | None = None) -> list[Run]:
        runs = self._queue("HELD", run_id_floor(created_before), limit, after)
        return [run for run in runs if not run.is_terminal and run.external_id is not None]

    # ---- statistics ------------------------------------------------------------------------

    #: what a run summary needs, as plain attributes of the run item
    _SUMMARY = ("action_name", "invoked", "mode", "status", "created_at", "started_at", "finished_at", "duration_ms")

    def _run_summaries(self, project_id: str, environment: str, since_ms: int, limit: int) -> list[RunSummary]:
        names = {f"#{index}": name for index, name in enumerate(("gsi1sk", *self._SUMMARY))}
        items = self._query(
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :p AND gsi1sk >= :f",
            ExpressionAttributeValues={
                ":p": _s(f"RUNS#{project_id}#{environment}"),
                ":f": _s(run_id_floor(since_ms)),
            },
            ProjectionExpression=", ".join(names),
            ExpressionAttributeNames=names,
            ScanIndexForward=False,
            Limit=min(max(limit, 25), 1000),
        )
        out: list[RunSummary] = []
        for item in items:
            summary = self._summary(item)
            if summary is None:
                continue
            if summary.created_at >= since_ms:
                out.append(summary)
                if len(out) >= limit:
                    break
        return out

    def _summary(self, item: dict[str, Any]) -> RunSummary | None:
        if "created_at" not in item or "invoked" not in item:
            # written before runs kept these attributes: read the whole record once
            found = self._get_run(item["gsi1sk"]["S"])
            return RunSummary.of(found[0]) if found else None
        return RunSummary(
            item["action_name"]["S"],
            item["invoked"]["S"],
            item["mode"]["S"],
            item["status"]["S"],
            int(item["created_at"]["N"]),
            _num(item, "started_at"),
            _num(item, "finished_at"),
            _num(item, "duration_ms"),
        )

    def _active_counts(self, project_id: str | None, cap: int) -> list[ActiveCount]:
        # every unfinished run is in one of gsi2's run partitions; sync calls are recorded at their end
        names = {"#p": "project_id", "#e": "environment", "#m": "mode", "#s": "status"}
        query: dict[str, Any] = {"IndexName": "gsi2", "ProjectionExpression": "#p, #e, #m, #s"}
        if project_id is not None:
            query["FilterExpression"] = "#p = :project"
        counts: Counter[tuple[str, str, str, str]] = Counter()
        for kind in ("READY", "LEASE", "HELD"):
            for shard in range(self.queue_shards):
                values = {":k": _s(f"{kind}#{shard}")}
                if project_id is not None:
                    values[":project"] = _s(project_id)
                items = self._query(
                    KeyConditionExpression="gsi2pk = :k",
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    Limit=min(max(cap, 25), 1000),
                    **query,
                )
                for item in self._take(items, cap):
                    counts[
                        (item["project_id"]["S"], item["environment"]["S"], item["mode"]["S"], item["status"]["S"])
                    ] += 1
        return [ActiveCount(*key, count) for key, count in sorted(counts.items())]

    def _set_lease(self, run_id: str, owner: str, until: int) -> str | None:
        # the revision moves too, so a full write prepared before this heartbeat cannot undo it
        answer = self._conditional(
            "update_item",
            Key={"pk": _s(f"RUN#{run_id}"), "sk": _s("R")},
            UpdateExpression="SET lease_until = :u, gsi2pk = :gp, gsi2sk = :gs ADD rev :one",
            ConditionExpression="lease_owner = :o AND #st IN (:a, :b)",
            ExpressionAttributeNames={"#st": "status"},
            ExpressionAttributeValues={
                ":u": _n(until),
                ":gp": _s(f"LEASE#{self._shard(run_id)}"),
                ":gs": _s(f"{until:015d}#{run_id}"),
                ":one": _n(1),
                ":o": _s(owner),
                ":a": _s(RunStatus.INPROGRESS.value),
                ":b": _s(RunStatus.TERMINATING.value),
            },
            ReturnValues="ALL_NEW",
        )
        if answer is None:
            return None
        status: str = answer["Attributes"]["status"]["S"]
        return status

    # ---- logs ------------------------------------------------------------------------------

    def _page_item(self, run_id: str, page: list[LogEntry]) -> dict[str, Any]:
        rows = [[e.seq, e.k, e.ts, e.msg, e.err] for e in page]
        return {
            "pk": _s(f"RUN#{run_id}"),
            "sk": _s(f"L#{page[-1].seq:012d}"),
            "first": _n(page[0].seq),
            "data": {"B": zlib.compress(_dumps(rows).encode(), 6)},
        }

    @staticmethod
    def _pages(entries: list[LogEntry]) -> list[list[LogEntry]]:
        """Consecutive entries grouped into items well under DynamoDB's 400 KB."""
        pages: list[list[LogEntry]] = []
        size = 0
        for entry in entries:
            cost = len(entry.msg.encode()) + 64 + (len(_dumps(entry.err)) if entry.err else 0)
            if not pages or size + cost > LOG_PAGE_BYTES or len(pages[-1]) >= LOG_PAGE_ENTRIES:
                pages.append([])
                size = 0
            pages[-1].append(entry)
            size += cost
        return pages

    def _transactions(self, pages: list[list[LogEntry]], room: int) -> Iterator[list[list[LogEntry]]]:
        """Pages in groups that fit one transaction beside ``TRANSACTION_ITEMS - room`` other items."""
        group: list[list[LogEntry]] = []
        for page in pages:
            if len(group) >= room or len(group) * LOG_PAGE_BYTES >= TRANSACTION_BYTES:
                yield group
                group = []
            group.append(page)
        if group:
            yield group

    def _remember_seq(self, run_id: str, last: int | None) -> None:
        with self._log_seq_lock:
            if last is None:
                self._log_seq.pop(run_id, None)
                return
            self._log_seq[run_id] = last
            self._log_seq.move_to_end(run_id)
            while len(self._log_seq) > 4096:
                self._log_seq.popitem(last=False)

    def _seq_update(self, run_id: str, old: int, new: int) -> dict[str, Any]:
        condition = "attribute_not_exists(pk) OR #last = :old" if old == 0 else "#last = :old"
        return {
            "Update": {
                "TableName": self.table,
                "Key": {"pk": _s(f"RUN#{run_id}"), "sk": _s("LSEQ")},
                "UpdateExpression": "SET #last = :new",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#last": "last"},
                "ExpressionAttributeValues": {":old": _n(old), ":new": _n(new)},
            }
        }

    def _log_writes(self, run_id: str, last: int, entries: list[LogEntry]) -> list[dict[str, Any]]:
        """Number ``entries`` after ``last``; the counter move and the page puts that store them."""
        for offset, entry in enumerate(entries, start=1):
            entry.seq = last + offset
        writes = [self._seq_update(run_id, last, last + len(entries))]
        for page in self._pages(entries):
            writes.append({"Put": {"TableName": self.table, "Item": self._page_item(run_id, page)}})
        return writes

    def _append_logs(self, run_id: str, entries: list[LogEntry]) -> list[LogEntry]:
        # The sequence counter is its own item; each transaction moves it from the value this
        # process last saw (one write per flush) and re-reads it only when another writer moved it.
        with self._log_seq_lock:
            last = self._log_seq.get(run_id)
        for group in self._transactions(self._pages(entries), TRANSACTION_ITEMS - 1):
            chunk = [entry for page in group for entry in page]
            for _ in range(50):
                if last is None:
                    item = self._get(f"RUN#{run_id}", "LSEQ")
                    last = _num(item or {}, "last") or 0
                try:
                    self._transact(self._log_writes(run_id, last, chunk))
                except _Canceled:
                    last = None
                    continue
                last += len(chunk)
                break
            else:
                self._remember_seq(run_id, None)
                raise InternalError("the log of this run is contended")
        self._remember_seq(run_id, last)
        return entries

    def _read_logs(self, run_id: str, after: int, limit: int) -> list[LogEntry]:
        # a page is keyed by its last entry, so the first page at or above after+1 holds after+1
        if after >= MAX_SEQ or limit <= 0:
            return []
        pages = self._query(
            KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={
                ":p": _s(f"RUN#{run_id}"),
                ":lo": _s(f"L#{max(after, 0) + 1:012d}"),
                ":hi": _s(f"L#{MAX_SEQ:012d}"),
            },
            ConsistentRead=True,
            Limit=8,
        )
        out: list[LogEntry] = []
        for page in pages:
            for seq, k, ts, msg, err in json.loads(zlib.decompress(page["data"]["B"])):
                if seq > after:
                    out.append(LogEntry(seq=seq, k=k, ts=ts, msg=msg, err=err))
                    if len(out) >= limit:
                        return out
        return out

    def _begin_sync(self, run: Run) -> int | None:
        return None  # recorded once, when it ends (_end_sync): a write per call saved

    def _end_sync(self, run: Run, entries: list[LogEntry]) -> tuple[bool, list[LogEntry]]:
        groups = list(self._transactions(self._pages(entries), TRANSACTION_ITEMS - 2))
        first = [entry for page in groups[0] for entry in page] if groups else []
        item = self._run_item(run, 0)
        writes: list[dict[str, Any]] = [
            {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}
        ]
        if first:
            writes += self._log_writes(run.id, 0, first)
        try:
            self._transact(writes)
        except _Canceled:
            self._drop_blob(item)
            return False, []
        self._remember_seq(run.id, len(first))
        rest = [entry for group in groups[1:] for page in group for entry in page]
        if rest:
            self._append_logs(run.id, rest)
        return True, entries

    # ---- documents -------------------------------------------------------------------------

    @staticmethod
    def _document_key(project_id: str, environment: str, kind: str, name: str) -> dict[str, Any]:
        return {"pk": _s(f"DOC#{project_id}#{environment}#{kind}"), "sk": _s(f"N#{name}")}

    def _document(self, item: dict[str, Any]) -> Document:
        _, project_id, environment, kind = item["pk"]["S"].split("#", 3)
        return Document(
            project_id=project_id,
            environment=environment,
            kind=kind,
            name=item["sk"]["S"][2:],
            body=self._unpack(item),
            updated_at=int(item["updated_at"]["N"]),
            expires_at=_num(item, "expires_at"),
        )

    def _put_document(self, document: Document) -> None:
        item: dict[str, Any] = {
            **self._document_key(document.project_id, document.environment, document.kind, document.name),
            "updated_at": _n(document.updated_at),
            **self._pack(document.body, f"documents/{uuid.uuid4().hex}.json.z"),
        }
        if document.expires_at is not None:
            item["expires_at"] = _n(document.expires_at)
            item[TTL_ATTRIBUTE] = self._expiration(document.expires_at)
        with translate(WHAT):
            answer = self.db.put_item(TableName=self.table, Item=item, ReturnValues="ALL_OLD")
        self._drop_blob(answer.get("Attributes"), keep=item)

    def _get_document(self, project_id: str, environment: str, kind: str, name: str) -> Document | None:
        key = self._document_key(project_id, environment, kind, name)
        item = self._get(key["pk"]["S"], key["sk"]["S"])
        return self._document(item) if item else None

    def _delete_document(self, project_id: str, environment: str, kind: str, name: str) -> bool:
        with translate(WHAT):
            answer = self.db.delete_item(
                TableName=self.table,
                Key=self._document_key(project_id, environment, kind, name),
                ReturnValues="ALL_OLD",
            )
        old = answer.get("Attributes")
        self._drop_blob(old)
        return bool(old)

    def _list_documents(
        self, project_id: str, environment: str, kind: str, after: str | None, limit: int
    ) -> list[Document]:
        if after is not None and not isinstance(after, str):
            raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued")
        values = {":p": self._document_key(project_id, environment, kind, "")["pk"], ":a": _s(f"N#{after or ''}")}
        # the partition holds only this kind's documents, so "after" is a plain range on the name
        condition = "pk = :p AND sk > :a" if after else "pk = :p AND begins_with(sk, :a)"
        query = self._query(
            KeyConditionExpression=condition, ExpressionAttributeValues=values, ConsistentRead=True, Limit=limit
        )
        items = self._take(query, limit)
        return [self._document(item) for item in items]

    # ---- idempotency -----------------------------------------------------------------------

    @staticmethod
    def _idem_key(scope: str) -> dict[str, Any]:
        return {"pk": _s("IDEM#" + hashlib.sha256(scope.encode()).hexdigest()), "sk": _s("I")}

    @staticmethod
    def _expiration(expires_at_ms: int, extra_seconds: int = 0) -> dict[str, str]:
        # TTL deletes lazily (hours); the rules compare expires_at, TTL only cleans up
        return _n(expires_at_ms // 1000 + 1 + extra_seconds)

    def _get_idempotency(self, scope: str) -> IdempotencyRecord | None:
        key = self._idem_key(scope)
        with translate(WHAT):
            item = self.db.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        if item is None:
            return None
        response = _str(item, "response")
        return IdempotencyRecord(
            scope=item["scope"]["S"],
            request_hash=item["request_hash"]["S"],
            run_id=item["run_id"]["S"],
            status=item["status"]["S"],
            expires_at=int(item["expires_at"]["N"]),
            response=json.loads(response) if response is not None else None,
            response_code=_num(item, "response_code"),
        )

    def _put_idempotency(self, record: IdempotencyRecord, replace_expired_before: int | None) -> bool:
        key = self._idem_key(record.scope)
        if replace_expired_before is None:
            item = {
                **key,
                "scope": _s(record.scope),
                "request_hash": _s(record.request_hash),
                "run_id": _s(record.run_id),
                "status": _s(record.status),
                "expires_at": _n(record.expires_at),
                TTL_ATTRIBUTE: self._expiration(record.expires_at, 3600),
            }
            return self._conditional("put_item", Item=item, ConditionExpression="attribute_not_exists(pk)") is not None
        answer = self._conditional(
            "update_item",
            Key=key,
            UpdateExpression="SET expires_at = :e, #ttl = :ttl",
            ConditionExpression="#st = :ip AND expires_at < :t",
            ExpressionAttributeNames={"#st": "status", "#ttl": TTL_ATTRIBUTE},
            ExpressionAttributeValues={
                ":e": _n(record.expires_at),
                ":ttl": self._expiration(record.expires_at, 3600),
                ":ip": _s("INPROGRESS"),
                ":t": _n(replace_expired_before),
            },
        )
        return answer is not None

    def _complete_idempotency(self, record: IdempotencyRecord) -> None:
        with translate(WHAT):
            self.db.update_item(
                TableName=self.table,
                Key=self._idem_key(record.scope),
                UpdateExpression="SET #st = :s, expires_at = :e, #resp = :r, response_code = :c, #ttl = :ttl",
                ExpressionAttributeNames={"#st": "status", "#resp": "response", "#ttl": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":s": _s(record.status),
                    ":e": _n(record.expires_at),
                    ":r": _s(_dumps(record.response)),
                    ":c": _n(record.response_code or 0),
                    ":ttl": self._expiration(record.expires_at),
                },
            )

    def _delete_idempotency(self, scope: str) -> None:
        with translate(WHAT):
            self.db.delete_item(TableName=self.table, Key=self._idem_key(scope))

    # ---- pipelines -------------------------------------------------------------------------

    def _get_pipeline_head(self, project_id: str, environment: str, name: str) -> PipelineHead | None:
        item = self._get(f"PIPELINES#{project_id}#{environment}", f"H#{name}")
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
            "pk": _s(f"PIPELINES#{record.project_id}#{record.environment}"),
            "sk": _s(f"H#{head.name}"),
            "latest_version": _n(head.latest_version),
            "deleted": {"BOOL": False},
        }
        if expected_latest is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            condition = {
                "ConditionExpression": "latest_version = :e",
                "ExpressionAttributeValues": {":e": _n(expected_latest)},
            }
        version_item: dict[str, Any] = {
            "pk": _s(f"PIPELINE#{record.project_id}#{record.environment}#{record.name}"),
            "sk": _s(f"V#{record.version:010d}"),
            "version": _n(record.version),
            "digest": _s(record.digest),
            "created_at": _n(record.created_at),
            **self._pack(record.spec, f"pipelines/{record.digest.removeprefix('sha256:')}.json.z"),
        }
        if record.engine_ref is not None:
            version_item["engine_ref"] = _s(record.engine_ref)
        try:
            self._transact(
                [
                    {"Put": {"TableName": self.table, "Item": head_item, **condition}},
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": version_item,
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except _Canceled:
            return False
        return True

    def _get_pipeline_version(
        self, project_id: str, environment: str, name: str, version: int
    ) -> PipelineRecord | None:
        item = self._get(f"PIPELINE#{project_id}#{environment}#{name}", f"V#{version:010d}")
        if item is None:
            return None
        return PipelineRecord(
            project_id,
            environment,
            name,
            int(item["version"]["N"]),
            item["digest"]["S"],
            int(item["created_at"]["N"]),
            self._unpack(item),
            _str(item, "engine_ref"),
        )

    def _list_pipeline_heads(
        self, project_id: str, environment: str, after: str | None, limit: int
    ) -> list[PipelineHead]:
        if after is not None and not isinstance(after, str):
            raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued")
        items = self._query(
            KeyConditionExpression="pk = :p AND sk > :a",
            FilterExpression="deleted = :f",
            ExpressionAttributeValues={
                ":p": _s(f"PIPELINES#{project_id}#{environment}"),
                ":a": _s(f"H#{after or ''}"),
                ":f": {"BOOL": False},
            },
            ConsistentRead=True,
            Limit=max(limit, 25),
        )
        return [self._pipeline_head(project_id, environment, item) for item in self._take(items, limit)]

    def _set_pipeline_head_deleted(self, project_id: str, environment: str, name: str) -> bool:
        answer = self._conditional(
            "update_item",
            Key={"pk": _s(f"PIPELINES#{project_id}#{environment}"), "sk": _s(f"H#{name}")},
            UpdateExpression="SET deleted = :t",
            ConditionExpression="deleted = :f",
            ExpressionAttributeValues={":t": {"BOOL": True}, ":f": {"BOOL": False}},
        )
        return answer is not None

    def _execution_item(self, execution: Execution, rev: int) -> dict[str, Any]:
        tenant = f"{execution.project_id}#{execution.environment}"
        item: dict[str, Any] = {
            "pk": _s(f"EXEC#{execution.id}"),
            "sk": _s("E"),
            "rev": _n(rev),
            "status": _s(execution.status.value),
            "engine": _s(execution.engine),
            "project_id": _s(execution.project_id),
            "environment": _s(execution.environment),
            "pipeline": _s(execution.pipeline),
            "gsi1pk": _s(f"EXECS#{tenant}#{execution.pipeline}"),
            "gsi1sk": _s(execution.id),
            **self._pack(execution.to_dict(), f"executions/{execution.id}/{uuid.uuid4().hex}.json.z"),
        }
        if execution.is_terminal:
            item["gsi2pk"] = _s(f"EXECUTED#{tenant}")
            item["gsi2sk"] = _s(execution.id)
        else:
            item["gsi2pk"] = _s(f"EXECUTING#{self._shard(execution.id)}")
            item["gsi2sk"] = _s(f"{execution.engine}#{execution.id}")
        return item

    def _insert_execution(self, execution: Execution) -> bool:
        item = self._execution_item(execution, 0)
        if self._conditional("put_item", Item=item, ConditionExpression="attribute_not_exists(pk)") is None:
            self._drop_blob(item)
            return False
        return True

    def _get_execution(self, execution_id: str) -> tuple[Execution, int] | None:
        item = self._get(f"EXEC#{execution_id}", "E")
        if item is None:
            return None
        return Execution.from_dict(self._unpack(item)), int(item["rev"]["N"])

    def _replace_execution(self, execution: Execution, expected_rev: int) -> bool:
        return self._swap(self._execution_item(execution, expected_rev + 1), expected_rev)

    def _list_executions(
        self, project_id: str, environment: str, pipeline: str | None, before: str | None, limit: int,
        status: str | None,
    ) -> list[Execution]:  # fmt: skip
        if before is not None and not isinstance(before, str):
            raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued")
        tenant = f"{project_id}#{environment}"
        below = before or "pex_~"
        where = {"#st = :st": {":st": _s(status)}} if status else {}
        if pipeline is not None:
            return self._executions(f"EXECS#{tenant}#{pipeline}", "gsi1", below, limit, where)
        # The tenant's ended executions have a partition of their own; those still going are the
        # few in the EXECUTING partitions (every tenant's), read with a filter and merged in.
        found = self._executions(f"EXECUTED#{tenant}", "gsi2", below, limit, where)
        running = {
            "#p = :p AND #e = :e AND gsi1sk < :b": {":p": _s(project_id), ":e": _s(environment), ":b": _s(below)},
            **where,
        }
        for shard in range(self.queue_shards):
            # ordered by engine first, so all of them (executions that have not ended are few)
            found += self._executions(f"EXECUTING#{shard}", "gsi2", None, MAX_PAGE * 2, running)
        unique = {execution.id: execution for execution in found}
        return sorted(unique.values(), key=lambda execution: execution.id, reverse=True)[:limit]

    def _executions(
        self, partition: str, index: str, below: str | None, limit: int, where: dict[str, dict[str, Any]]
    ) -> list[Execution]:
        """Up to ``limit`` executions of one index partition, newest first, matching ``where``."""
        values: dict[str, Any] = {":k": _s(partition)}
        condition = f"{index}pk = :k"
        if below is not None:
            condition += f" AND {index}sk < :below"
            values[":below"] = _s(below)
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
        items = self._query(ExpressionAttributeValues=values, **query)
        return [Execution.from_dict(self._unpack(item)) for item in self._take(items, limit)]

    def _active_executions(self, engine: str, limit: int) -> list[Execution]:
        found: list[Execution] = []
        for shard in range(self.queue_shards):
            items = self._query(
                IndexName="gsi2",
                KeyConditionExpression="gsi2pk = :k AND begins_with(gsi2sk, :engine)",
                ExpressionAttributeValues={":k": _s(f"EXECUTING#{shard}"), ":engine": _s(f"{engine}#")},
                Limit=max(limit, 25),
            )
            found += [Execution.from_dict(self._unpack(item)) for item in self._take(items, limit)]
        # an index is eventually consistent: drop what it still shows after the execution ended
        active = [execution for execution in found if not execution.is_terminal]
        return sorted(active, key=lambda execution: execution.id)[:limit]
