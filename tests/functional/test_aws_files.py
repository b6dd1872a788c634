"""Files on the AWS backend (moto): what a Lambda sync call refuses, and how inputs are checked.

The Lambda sync path does not hand a file stash or input files to the function yet, so a call
that names them is refused with a 422 before a stash is made or anything runs. Input files on S3
are checked for existence at submit with a HEAD request, never downloaded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from hatchway.aws.aws_lambda import LambdaExecutor
from hatchway.aws.batch import BatchEngine
from hatchway.aws.clients import AwsClients
from hatchway.aws.s3blobs import S3BlobStore
from hatchway.client import ValidationErrorResponse
from hatchway.domain.runs import RunRequest
from hatchway.domain.tenants import Principal
from hatchway.errors import NotFound
from hatchway.services import Services
from hatchway.wiring import build_placement
from tests.awsmock import REGION, CallCounter, aws_services, aws_settings, make_infrastructure, moto_in_process
from tests.conftest import inprocess_client

pytestmark = pytest.mark.aws

ADMIN = Principal(None, None, frozenset({"admin"}))
P, ENV = "proj_local", "development"
ACTION: dict[str, Any] = {
    "name": "echo",
    "image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/actions/echo:1",
    "sync_actions": ["hello"],
    "container_parameters": {"entry_point": [sys.executable, "-c"], "command": ["print('{}')"]},
}


@pytest.fixture(scope="module")
def infrastructure() -> Iterator[dict[str, Any]]:
    with moto_in_process():
        yield make_infrastructure(boto3.session.Session(region_name=REGION), "hwfiles")


@pytest.fixture
def stack(tmp_path: Path, infrastructure: dict[str, Any]) -> tuple[Services, CallCounter]:
    """Services on Lambda (sync) and Batch (runs) whose blobs are S3 objects (the aws backend's); AWS calls counted."""
    session = boto3.session.Session(region_name=REGION)
    counter = CallCounter(session)
    settings = aws_settings(tmp_path / "home").with_(**infrastructure)
    aws = AwsClients(REGION, None, session)
    placement = build_placement(
        settings, sync=LambdaExecutor.from_settings(settings, aws), engine=BatchEngine.from_settings(settings, aws)
    )
    services = aws_services(settings, session, placement)
    assert isinstance(services.files.blobs, S3BlobStore)
    services.actions.register(ADMIN, P, ENV, ACTION)
    return services, counter


@pytest.mark.parametrize("body", [{"stash_id": "NEW"}, {"stash_id": True}])
def test_a_lambda_sync_call_with_a_stash_is_refused_before_anything_is_made(
    stack: tuple[Services, CallCounter], body: dict[str, Any]
) -> None:
    services, counter = stack
    counter.clear()
    # When a sync call through the Lambda executor asks for a file stash
    with inprocess_client(services) as hw, pytest.raises(ValidationErrorResponse) as refused:
        hw.request("POST", f"/v1/projects/{P}/actions/echo/sync/hello", json={"parameters": {}, **body})
    # Then it is a 422 in the API's error shape, saying why
    assert refused.value.status_code == 422
    assert "not available for lambda sync actions yet" in refused.value.message
    assert refused.value.details[0]["loc"] == ["body", "stash_id"]
    # and nothing ran, and no stash (nor run) was written
    calls = counter.summary()
    assert calls["lambda.Invoke"] == 0
    assert not [call for call in calls if call.startswith("dynamodb.") and "Get" not in call], calls


def test_inputs_are_checked_with_a_head_request_not_downloaded(stack: tuple[Services, CallCounter]) -> None:
    services, counter = stack
    services.files.put(ADMIN, P, ENV, "logs/big.log", b"x" * (1 << 20))
    counter.clear()
    # When a run names an input stored on S3
    services.runs.submit(ADMIN, P, ENV, "echo", RunRequest({}, inputs=["logs/big.log"]))
    # Then its existence was checked with HEAD, and nothing was downloaded at submit
    calls = counter.summary()
    assert calls["s3.HeadObject"] == 1
    assert calls["s3.GetObject"] == 0
    assert not list(services.settings.home.rglob("big.log"))
    # and a missing input is a 404 that submits nothing
    counter.clear()
    with pytest.raises(NotFound):
        services.runs.submit(ADMIN, P, ENV, "echo", RunRequest({}, inputs=["logs/missing.log"]))
    assert counter.summary()["batch.SubmitJob"] == 0


def test_a_download_over_the_answer_limit_is_a_303_to_a_link_that_s3_answers(
    stack: tuple[Services, CallCounter],
) -> None:
    import httpx
    import requests

    from hatchway.api import create_app
    from hatchway.testing import ResolverTransport
    from tests.helpers import ADMIN_TOKEN

    # Given a gateway behind API Gateway (no streaming) whose answers may be 64 KiB at most
    services = replace(stack[0], settings=stack[0].settings.with_(max_answer_bytes=64 * 1024))
    app = create_app(services)
    large, small = bytes(range(256)) * 400, b"small"
    services.files.put(ADMIN, P, ENV, "in/large.bin", large)
    services.files.put(ADMIN, P, ENV, "in/small.bin", small)
    with httpx.Client(base_url="http://hatchway.local", transport=ResolverTransport(app.resolve),
                      headers={"authorization": f"Bearer {ADMIN_TOKEN}"}) as http:  # fmt: skip
        # When the large file is asked for: a 303 to a presigned link of its object
        answer = http.get(f"/v1/projects/{P}/files/in/large.bin")
        assert answer.status_code == 303, answer.text
        link = answer.headers["location"]
        assert "X-Amz-Signature=" in link and "X-Amz-Expires=300" in link
        # which reads the file whole without any credentials of the caller's
        assert requests.get(link, timeout=30).content == large
        # and a small one is still in the answer
        assert http.get(f"/v1/projects/{P}/files/in/small.bin").content == small


def test_a_download_whose_base64_is_over_lambdas_response_limit_is_a_303(stack: tuple[Services, CallCounter]) -> None:
    import httpx

    from hatchway.api import create_app
    from hatchway.runtime.contract import LAMBDA_RESPONSE_BYTES, MIB
    from hatchway.testing import ResolverTransport
    from tests.helpers import ADMIN_TOKEN

    # Given a 5 MiB file: under the 6 MiB answer limit, but 6.7 MB once base64-encoded for Lambda
    services = stack[0]
    assert services.settings.server.max_answer_bytes == 6 * MIB
    data = b"\x00\xff" * (5 * MIB // 2)
    assert len(data) < services.settings.server.max_answer_bytes and len(data) * 4 // 3 > LAMBDA_RESPONSE_BYTES
    services.files.put(ADMIN, P, ENV, "in/five.bin", data)
    with httpx.Client(base_url="http://hatchway.local", transport=ResolverTransport(create_app(services).resolve),
                      headers={"authorization": f"Bearer {ADMIN_TOKEN}"}) as http:  # fmt: skip
        # When it is asked for behind API Gateway, it is a 303 to its link (in the answer, the
        # function's answer would be over the limit: API Gateway's 502)
        answer = http.get(f"/v1/projects/{P}/files/in/five.bin")
    assert answer.status_code == 303 and "X-Amz-Signature=" in answer.headers["location"]


def test_artifacts_are_kept_under_their_project_and_those_kept_before_are_still_read(
    stack: tuple[Services, CallCounter],
) -> None:
    from hatchway.domain.runs import Mode, RunStatus
    from tests.contract.records import make_run

    services = stack[0]
    blobs = services.files.blobs
    # Given a run whose artifacts were kept before keys carried the project, and one of today's
    old = services.repos.runs.create_run(make_run(P, ENV, mode=Mode.ASYNC, status=RunStatus.SUCCESSFUL))
    blobs.put_bytes(f"artifacts/{old.id}/files/old.txt", b"old")
    new = services.repos.runs.create_run(make_run(P, ENV, mode=Mode.ASYNC, status=RunStatus.SUCCESSFUL))
    blobs.put_bytes(f"{services.files.artifacts_prefix(P, new.id)}/files/new.txt", b"new")
    # Then both are listed and read through the API's use cases
    assert [f.path for f in services.files.artifacts(ADMIN, P, ENV, old.id)] == ["files/old.txt"]
    assert services.files.artifact(ADMIN, P, ENV, old.id, "files/old.txt").read() == b"old"
    assert [f.path for f in services.files.artifacts(ADMIN, P, ENV, new.id)] == ["files/new.txt"]
    assert services.files.artifact(ADMIN, P, ENV, new.id, "files/new.txt").read() == b"new"
    # today's object key starts with the project (a run container's role writes no other)
    assert services.files.artifacts_prefix(P, new.id) == f"artifacts/{P}/{new.id}"
    # and another project reads neither
    with pytest.raises(NotFound):
        services.files.artifacts(ADMIN, "proj_other", ENV, new.id)
