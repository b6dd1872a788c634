"""One ``repos`` fixture over every backend: the repository contract runs unchanged against each.

``repos`` is one backend's repositories (a ``ports.Repos``): SQLite in a fresh file; DynamoDB on
moto (one in-process mock for the whole suite, a table and a bucket per test); DynamoDB on LocalStack
when ``LOCALSTACK_ENDPOINT`` is set. ``tenants``, ``actions``, ``runs``, ``idempotency``,
``documents`` and ``pipelines`` are its repositories, typed by their rules bases (tests may reach a
primitive).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hatchway.store.actions import BaseActionRepo
from hatchway.store.documents import BaseDocumentRepo
from hatchway.store.idempotency import BaseIdempotencyRepo
from hatchway.store.pipelines import BasePipelineRepo
from hatchway.store.runs import BaseRunRepo
from hatchway.store.tenants import BaseTenantRepo
from tests.awsmock import REGION, localstack_endpoint, moto_in_process
from tests.contract.backends import drop, dynamodb_store

#: the DynamoDB backends run on moto or LocalStack: `aws` tests (`scripts/test --quick` leaves them out)
BACKENDS = [
    "sqlite",
    pytest.param("dynamodb", marks=pytest.mark.aws),
    pytest.param("dynamodb-localstack", marks=pytest.mark.aws),
]


@pytest.fixture(scope="package")
def moto() -> Iterator[None]:
    """One in-process moto for the suite (starting one costs more than a table): tests share it,
    each with its own table and bucket."""
    with moto_in_process():
        yield


@pytest.fixture(scope="package")
def moto_aws(moto: None) -> Any:
    """Clients of the suite's moto, made once (a client costs more than a table too)."""
    from hatchway.aws.clients import AwsClients

    return AwsClients(REGION)


@pytest.fixture(params=BACKENDS)
def repos(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        from hatchway.store.sqlite import SqliteStore

        sqlite = SqliteStore(tmp_path / "hatchway.db")
        yield sqlite
        sqlite.close()
    elif request.param == "dynamodb":
        dynamo = dynamodb_store(request.getfixturevalue("moto_aws"))
        yield dynamo
        drop(dynamo)
    else:
        endpoint = localstack_endpoint()
        if endpoint is None:
            pytest.skip("LOCALSTACK_ENDPOINT is not set")
        from tests.awsmock import FAKE_CREDENTIALS, patched_env

        with patched_env(FAKE_CREDENTIALS):
            try:
                from hatchway.aws.clients import AwsClients

                dynamo = dynamodb_store(AwsClients(REGION, endpoint))
            except Exception as exc:  # LocalStack's free edition may not serve DynamoDB/S3
                pytest.skip(f"LocalStack at {endpoint} cannot serve DynamoDB/S3 ({type(exc).__name__})")
            yield dynamo
            drop(dynamo)


@pytest.fixture
def tenants(repos: Any) -> BaseTenantRepo:
    return repos.tenants


@pytest.fixture
def actions(repos: Any) -> BaseActionRepo:
    return repos.actions


@pytest.fixture
def runs(repos: Any) -> BaseRunRepo:
    return repos.runs


@pytest.fixture
def idempotency(repos: Any) -> BaseIdempotencyRepo:
    return repos.idempotency


@pytest.fixture
def documents(repos: Any) -> BaseDocumentRepo:
    return repos.documents


@pytest.fixture
def pipelines(repos: Any) -> BasePipelineRepo:
    return repos.pipelines
