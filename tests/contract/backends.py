"""DynamoDB repositories for the contract tests: a table and a bucket each, and their removal."""

from __future__ import annotations

import uuid
from typing import Any


def dynamodb_store(aws: Any) -> Any:
    """Repositories over a new table (two queue shards, so the shard merge is exercised) and bucket."""
    from hatchway.store.dynamodb import DynamoDbStore

    suffix = uuid.uuid4().hex[:8]
    bucket = f"hatchway-contract-{suffix}"
    aws.client("s3").create_bucket(Bucket=bucket)
    store = DynamoDbStore(f"hatchway-contract-{suffix}", aws, bucket=bucket, queue_shards=2)
    store.create_table()
    return store


def drop(store: Any) -> None:
    """Remove a test's table and bucket (moto keeps them in memory for the whole suite)."""
    table = store.table
    table.db.delete_table(TableName=table.name)
    s3 = table.aws.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=table.bucket):
        for blob in page.get("Contents", []):
            s3.delete_object(Bucket=table.bucket, Key=blob["Key"])
    s3.delete_bucket(Bucket=table.bucket)
