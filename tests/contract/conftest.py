"""One ``store`` fixture over every backend: the contract suite runs unchanged against each."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hatchway.store.flat import SingleStore
from tests.awsmock import REGION, localstack_endpoint, moto_in_process


def _dynamodb_store(endpoint: str | None) -> SingleStore:
    from hatchway.aws.clients import AwsClients
    from hatchway.store.dynamodb import DynamoDbStore

    aws = AwsClients(REGION, endpoint)
    suffix = uuid.uuid4().hex[:8]
    bucket = f"hatchway-contract-{suffix}"
    aws.client("s3").create_bucket(Bucket=bucket)
    store = DynamoDbStore(f"hatchway-contract-{suffix}", aws, bucket=bucket, queue_shards=2)
    store.create_table()
    return store


#: the DynamoDB backends run on moto or LocalStack: `aws` tests (`scripts/test --quick` leaves them out)
BACKENDS = [
    "sqlite",
    pytest.param("dynamodb", marks=pytest.mark.aws),
    pytest.param("dynamodb-localstack", marks=pytest.mark.aws),
]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SingleStore]:
    if request.param == "sqlite":
        from hatchway.store.sqlite import SqliteStore

        sqlite = SqliteStore(tmp_path / "hatchway.db")
        yield sqlite
        sqlite.close()
    elif request.param == "dynamodb":
        with moto_in_process():
            yield _dynamodb_store(None)
    else:
        endpoint = localstack_endpoint()
        if endpoint is None:
            pytest.skip("LOCALSTACK_ENDPOINT is not set")
        from tests.awsmock import FAKE_CREDENTIALS, patched_env

        with patched_env(FAKE_CREDENTIALS):
            try:
                dynamo = _dynamodb_store(endpoint)
            except Exception as exc:  # LocalStack's free edition may not serve DynamoDB
                pytest.skip(f"LocalStack at {endpoint} cannot serve DynamoDB/S3 ({type(exc).__name__})")
            yield dynamo
