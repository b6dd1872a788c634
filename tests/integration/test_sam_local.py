"""``sam local invoke`` against the private dockerd: the API function of ``template.yaml`` and a
sync action as a container Lambda (``infra/sam/sync-action.yaml``).

The sync-action function is the action image (here the base image) with awslambdaric and the
runtime adapter; its event is an adapter payload (``events/SyncActionFunction/hello.json``). The
API function is a zip function: where the public Lambda images cannot be pulled it runs on
``hatchway/lambda-python`` (``--invoke-image``, built by ``infra/images/build --lambda-python``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO
from tests.integration.conftest import SAM_VENV

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def sam(rie_path: str) -> str:
    """The ``sam`` command (the rie_path fixture installs aws-sam-cli if it is missing)."""
    found = shutil.which("sam") or str(SAM_VENV / "bin" / "sam")
    if not Path(found).exists():
        pytest.skip("sam is not installed")
    return found


@pytest.fixture(scope="module")
def lambda_python(docker_client: Any, base_image: str) -> str:
    from hatchway.executors.containers.images import build_lambda_python

    tag = build_lambda_python(docker_client)
    _drop_stale_derivatives(docker_client, tag)
    return tag


def _drop_stale_derivatives(client: Any, tag: str) -> None:
    """sam adds its emulator to an ``--invoke-image`` once, as ``<repository>:rapid-<arch>``, and
    under ``--skip-pull-image`` reuses that image even after the invoke image was rebuilt (new
    dependencies): drop a derivative that is not built on the current image."""
    repository = tag.rsplit(":", 1)[0]
    current = client.images.get(tag).id
    for image in client.images.list(name=repository):
        derived = [name for name in image.tags if name.startswith(f"{repository}:rapid-")]
        if derived and current not in {layer.get("Id") for layer in client.api.history(image.id)}:
            for name in derived:
                client.images.remove(name, force=True)


def sam_invoke(
    sam: str, docker_host: str, tmp_path: Path, template: str, function: str, event: str, *extra: str
) -> dict[str, Any]:
    env = {
        **os.environ,
        "DOCKER_HOST": docker_host,
        # no account lookup (no network), no telemetry, a home of its own
        "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SAM_CLI_TELEMETRY": "0",
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [sam, "local", "invoke", function, "--template", str(REPO / template),
         "--event", str(REPO / "events" / function / event), "--skip-pull-image", *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_sam_local_invoke_of_a_sync_action_function(
    sam: str, docker_host: str, base_image: str, tmp_path: Path
) -> None:
    # When the sync-action function is invoked with an adapter payload
    outcome = sam_invoke(
        sam, docker_host, tmp_path, "infra/sam/sync-action.yaml", "SyncActionFunction", "hello.json",
        "--parameter-overrides", f"ImageUri={base_image}",
    )  # fmt: skip
    # Then the runtime adapter answers the outcome the gateway maps to a sync answer
    assert outcome["hatchway"] == 1
    assert outcome["exit_code"] == 0
    assert json.loads(outcome["stdout"]) == {"hello": "sam local"}


def test_sam_local_invoke_of_the_api_function(sam: str, docker_host: str, lambda_python: str, tmp_path: Path) -> None:
    # When the API function is invoked with an HTTP API event for GET /health
    response = sam_invoke(
        sam, docker_host, tmp_path, "template.yaml", "ApiFunction", "health.json", "--invoke-image", lambda_python,
        "--parameter-overrides", "BootstrapToken=sam-local-bootstrap-token-0000 VpcId=vpc-0 SubnetIds=subnet-0",
    )  # fmt: skip
    # Then the same resolver as `hatchway serve` answers
    assert response.get("statusCode") == 200, response
    assert json.loads(response["body"])["status"] == "ok"
