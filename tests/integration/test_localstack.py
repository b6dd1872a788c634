"""The AWS code paths against LocalStack, when ``LOCALSTACK_ENDPOINT`` names one.

moto is the always-on double (the functional tier); these tests repeat the essentials against
LocalStack. Services its free edition does not serve (DynamoDB in some builds, Batch, ECS) make
their tests skip with that reason instead of failing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from hatchway.aws.clients import AwsClients
from hatchway.errors import SecretBindingError
from tests.awsmock import FAKE_CREDENTIALS, REGION, CallCounter, aws_settings, localstack_endpoint, patched_env

pytestmark = [pytest.mark.integration, pytest.mark.aws]


@pytest.fixture
def endpoint() -> Iterator[str]:
    found = localstack_endpoint()
    if found is None:
        pytest.skip("LOCALSTACK_ENDPOINT is not set")
    with patched_env(FAKE_CREDENTIALS):
        yield found


def session() -> Any:
    return boto3.session.Session(region_name=REGION)


def served(what: str, call: Any) -> None:
    """Skip unless LocalStack answers ``call`` (its free edition lacks some services)."""
    try:
        call()
    except Exception as exc:
        pytest.skip(f"LocalStack does not serve {what} here ({type(exc).__name__})")


def test_kms_envelope_encryption_with_few_calls(endpoint: str, tmp_path: Path) -> None:
    from hatchway.aws.kms import kms_secret_box

    boto = session()
    counter = CallCounter(boto)
    kms = boto.client("kms", endpoint_url=endpoint)
    served("KMS", kms.list_keys)
    arn = kms.create_key(Description="hatchway integration")["KeyMetadata"]["Arn"]
    settings = aws_settings(tmp_path, endpoint, kms_key_id=arn)
    box = kms_secret_box(settings, aws=AwsClients(REGION, endpoint, boto))
    ciphertexts = [box.encrypt(f"value-{i}", "proj_a", "development", "act") for i in range(5)]
    counter.clear()
    for _ in range(20):
        for index, ciphertext in enumerate(ciphertexts):
            assert box.decrypt(ciphertext, "proj_a", "development", "act") == f"value-{index}"
    assert counter.count("kms", "Decrypt") == 1
    with pytest.raises(SecretBindingError):
        box.decrypt(ciphertexts[0], "proj_b", "development", "act")


def test_bootstrap_and_the_store_on_localstack(endpoint: str, tmp_path: Path) -> None:
    from hatchway.domain.runs import Run, now_ms
    from hatchway.store.dynamodb import DynamoDbStore
    from hatchway.wiring import aws_bootstrap as bootstrap

    served("DynamoDB", lambda: session().client("dynamodb", endpoint_url=endpoint).list_tables())
    settings = aws_settings(tmp_path, endpoint)
    aws = AwsClients(REGION, endpoint, session())
    made = bootstrap(settings, aws)
    assert len(made.created) == 3
    store = DynamoDbStore.from_settings(settings, aws=aws)
    now = now_ms()
    run = Run("run_" + uuid.uuid4().hex[:26].upper(), "proj_a", "development", "act", 1, "sha256:" + "0" * 64,
              created_at=now, available_at=now)  # fmt: skip
    store.runs.create_run(run)
    claimed = store.runs.claim("worker", 30)
    assert claimed is not None and claimed.id == run.id


@pytest.mark.parametrize("engine", ["batch", "ecs"])
def test_remote_executors_on_localstack(endpoint: str, tmp_path: Path, engine: str) -> None:
    from hatchway.aws.batch import BatchEngine
    from hatchway.aws.ecs import EcsEngine
    from hatchway.domain.runs import Run, now_ms
    from hatchway.domain.spec import ActionSpec
    from tests.awsmock import make_infrastructure

    boto = session()
    client = boto.client(engine, endpoint_url=endpoint)
    served(
        "AWS Batch" if engine == "batch" else "ECS",
        client.describe_job_queues if engine == "batch" else client.list_clusters,
    )
    base = aws_settings(tmp_path, endpoint)
    try:
        settings = base.with_(**make_infrastructure(_at(boto, endpoint), base.aws.resource_prefix))
    except Exception as exc:
        pytest.skip(f"LocalStack cannot make the {engine} infrastructure here ({type(exc).__name__})")
    cls = BatchEngine if engine == "batch" else EcsEngine
    executor = cls.from_settings(settings, AwsClients(REGION, endpoint, boto))
    spec = ActionSpec.model_validate({"name": "act", "image_uri": "public.ecr.aws/docker/library/python:3.12"})
    executor.prepare("proj_a", spec)
    now = now_ms()
    run = Run("run_" + uuid.uuid4().hex[:26].upper(), "proj_a", "development", "act", 1, spec.digest(),
              created_at=now, available_at=now, timeout_seconds=60)  # fmt: skip
    run.external_id = executor.submit(run, spec)
    assert run.external_id
    executor.terminate(run, "integration test done")


def _at(boto: Any, endpoint: str) -> Any:
    """A session whose clients all go to ``endpoint``."""

    class Pointed:
        def client(self, service: str, **kwargs: Any) -> Any:
            return boto.client(service, endpoint_url=endpoint, **kwargs)

    return Pointed()
