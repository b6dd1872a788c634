"""The AWS backend's repositories: one DynamoDB table (and the outputs bucket for large records).

One table, keys ``pk``/``sk``, two overloaded sparse GSIs, on-demand capacity:

===============  =========================  =====================  ===================================
item             pk                         sk                     index keys
===============  =========================  =====================  ===================================
project          ``PROJECT#<id>``           ``P``                  gsi1 ``PROJECTS``, id
project name     ``PROJECTNAME#<name>``     ``N``                  (the project's id: names are unique)
token            ``TOKEN#<id>``             ``T``                  gsi1 ``TOKENS#<project>``, created#id
action head      ``ACTIONS#<p>#<env>``      ``H#<name>``           (embeds the latest version)
action version   ``ACTION#<p>#<env>#<n>``   ``V#<version:010d>``
digest pointer   ``ACTION#<p>#<env>#<n>``   ``D#<digest>``         (embeds that version)
run              ``RUN#<p>#<id>``           ``R``                  gsi1 ``RUNS#<p>#<env>``, id;
                                                                   gsi2 ``READY#<s>``, available_at#id
                                                                   or ``LEASE#<s>``, lease_until#id
                                                                   or ``HELD#<s>``, id
log sequence     ``RUN#<p>#<id>``           ``LSEQ``
log page         ``RUN#<p>#<id>``           ``L#<last seq:012d>``  (consecutive entries, compressed)
idempotency key  ``IDEM#<sha256(scope)>``   ``I``                  TTL attribute ``expiration``
document         ``DOC#<p>#<env>#<kind>``   ``N#<name>``           TTL attribute ``expiration``
pipeline head    ``PIPELINES#<p>#<env>``    ``H#<name>``
pipeline vers.   ``PIPELINE#<p>#<env>#<n>`` ``V#<version:010d>``
execution        ``EXEC#<id>``              ``E``                  gsi1 ``EXECS#<p>#<env>#<pipeline>``, id;
                                                                   gsi2 ``EXECUTING#<s>``, engine#id
                                                                   or ``EXECUTED#<p>#<env>``, id
===============  =========================  =====================  ===================================

Each aggregate's module says how it uses its items (``runs.py``, ``logs.py``, ``actions.py``, ...);
``_table.py`` holds what they share: conditional writes (a failed one can answer the item in the
way: ``ReturnValuesOnConditionCheckFailure="ALL_OLD"``), transactions, queries, and packing: records
and specs are stored as zlib-compressed JSON, and one too large for an item (400 KB) goes to the
outputs bucket while the item keeps its key. Idempotency keys and expiring documents are removed
by DynamoDB TTL. The rules live in the bases of ``hatchway.store`` (shared with SQLite and checked
by one contract suite).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hatchway.aws.clients import AwsClients
from hatchway.store.dynamodb._table import TABLE_SCHEMA, TTL_ATTRIBUTE, Table
from hatchway.store.dynamodb.actions import DynamoDbActionRepo
from hatchway.store.dynamodb.documents import DynamoDbDocumentRepo
from hatchway.store.dynamodb.idempotency import DynamoDbIdempotencyRepo
from hatchway.store.dynamodb.pipelines import DynamoDbPipelineRepo
from hatchway.store.dynamodb.runs import DynamoDbRunRepo
from hatchway.store.dynamodb.tenants import Backfilled, DynamoDbTenantRepo

if TYPE_CHECKING:
    from hatchway.config import Settings

__all__ = ["TABLE_SCHEMA", "TTL_ATTRIBUTE", "Backfilled", "DynamoDbStore"]


class DynamoDbStore:
    """The six repositories over one DynamoDB table."""

    def __init__(
        self,
        table_name: str,
        aws: AwsClients | None = None,
        bucket: str | None = None,
        queue_shards: int = 1,
        blob_prefix: str = "",
        legacy_run_keys: bool = True,
    ) -> None:
        self.table = Table(table_name, aws, bucket, queue_shards, blob_prefix)
        self.aws = self.table.aws
        self.tenants = DynamoDbTenantRepo(self.table)
        self.actions = DynamoDbActionRepo(self.table)
        self.runs = DynamoDbRunRepo(self.table, legacy_run_keys)
        self.idempotency = DynamoDbIdempotencyRepo(self.table)
        self.documents = DynamoDbDocumentRepo(self.table)
        self.pipelines = DynamoDbPipelineRepo(self.table)

    @classmethod
    def from_settings(cls, settings: Settings, aws: AwsClients | None = None, **clients: Any) -> DynamoDbStore:
        session = clients.pop("session", None)
        aws = aws or AwsClients.from_settings(settings, session, **clients)
        return cls(
            settings.store.table_name,
            aws,
            settings.aws.outputs_bucket,
            blob_prefix="records/",
            legacy_run_keys=settings.aws.is_legacy_run_keys_enabled,
        )

    def create_table(self, wait: bool = True) -> bool:
        """Create the table (and enable TTL) if it does not exist; True if it was created."""
        return self.table.create(wait)

    def migrate(self) -> Backfilled:
        """Bring items written by earlier versions up to today's format (idempotent; ``hatchway aws
        migrate``): projects gain their gsi1 keys and their name claim."""
        return self.tenants.backfill_projects()

    def ping(self) -> None:
        self.table.ping()

    def close(self) -> None:
        """Nothing to release: the clients are shared (``AwsClients``)."""


if TYPE_CHECKING:  # mypy checks that these answer their ports
    from hatchway import ports

    def _implements(store: DynamoDbStore) -> ports.Repos:
        return store
