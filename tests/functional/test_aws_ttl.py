"""Expiring records on DynamoDB (moto): the table the store and `hatchway aws bootstrap` create has
TTL on, and idempotency keys and expiring documents carry the TTL attribute in epoch seconds.

DynamoDB's TTL reads a Number of *seconds*; a millisecond value would mean "expires in ~50,000
years" and nothing would ever be removed. moto does not enforce TTL, so the attribute is read back.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from hatchway.aws.clients import AwsClients
from hatchway.domain.records import Document
from hatchway.store.dynamodb import TTL_ATTRIBUTE, DynamoDbStore
from hatchway.wiring import aws_bootstrap as bootstrap
from tests.awsmock import REGION, aws_settings, moto_in_process

pytestmark = pytest.mark.aws

#: epoch seconds stay below this until the year 5138; epoch milliseconds are far above it
SECONDS_BOUND = 10**11


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DynamoDbStore]:
    with moto_in_process():
        settings = aws_settings(tmp_path / "home")
        aws = AwsClients(REGION, None, boto3.session.Session(region_name=REGION))
        bootstrap(settings, aws)
        yield DynamoDbStore.from_settings(settings, aws=aws)


def raw_item(store: DynamoDbStore, pk: str, sk: str) -> dict[str, Any]:
    item: dict[str, Any] = store.table.db.get_item(TableName=store.table.name, Key={"pk": {"S": pk}, "sk": {"S": sk}})[
        "Item"
    ]
    return item


def expiration(item: dict[str, Any]) -> int:
    value = int(item[TTL_ATTRIBUTE]["N"])
    assert 0 < value < SECONDS_BOUND, f"{TTL_ATTRIBUTE}={value} is not in epoch seconds"
    return value


def test_the_table_bootstrap_creates_expires_items_by_their_ttl_attribute(store: DynamoDbStore) -> None:
    ttl = store.table.db.describe_time_to_live(TableName=store.table.name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": TTL_ATTRIBUTE}


def test_idempotency_keys_carry_their_expiry_in_epoch_seconds(store: DynamoDbStore) -> None:
    scope = "proj/development/POST /runs/key-1"
    key = "IDEM#" + hashlib.sha256(scope.encode()).hexdigest()
    # Given a request holding its key while it runs
    before = int(time.time())
    outcome = store.idempotency.idempotency_begin(scope, "hash", "run_1", in_progress_seconds=60, ttl_seconds=86400)
    assert outcome.is_owner
    held = expiration(raw_item(store, key, "I"))
    # the in-progress hold is kept an hour past its expiry (a crashed request's key can be taken over)
    assert before + 60 + 3600 <= held <= int(time.time()) + 60 + 3600 + 1
    # When it completes, the key lives as long as its answer is replayed
    store.idempotency.idempotency_complete(outcome.record, {"id": "run_1"}, 202, ttl_seconds=86400)
    done = raw_item(store, key, "I")
    assert done["status"]["S"] == "COMPLETED"
    assert before + 86400 <= expiration(done) <= int(time.time()) + 86400 + 1
    assert expiration(done) == int(done["expires_at"]["N"]) // 1000 + 1


def test_expiring_documents_carry_their_expiry_in_epoch_seconds_and_others_none(store: DynamoDbStore) -> None:
    expires_at = int(time.time() * 1000) + 3_600_000
    store.documents.put_document(Document("proj", "development", "cache", "answer", {"v": 1}, expires_at=expires_at))
    store.documents.put_document(Document("proj", "development", "session-type", "kept", {"v": 2}))
    expiring = raw_item(store, "DOC#proj#development#cache", "N#answer")
    assert expiration(expiring) == expires_at // 1000 + 1
    kept = raw_item(store, "DOC#proj#development#session-type", "N#kept")
    assert TTL_ATTRIBUTE not in kept
