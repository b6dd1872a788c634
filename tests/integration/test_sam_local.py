"""``sam local invoke`` against the private dockerd: the API function of ``template.yaml`` and a
sync action as a container Lambda (``infra/sam/sync-action.yaml``).

The sync-action function is the action image (here the base image) with awslambdaric and the
runtime adapter; its event is an adapter payload (``events/SyncActionFunction/hello.json``). The
API function is a zip function: where the public Lambda images cannot be pulled it runs on
``hatchway/lambda-python:<the template's Python>`` (``--invoke-image``, built by
``infra/images/build --python 3.13 --lambda-python``), from the source tree or as ``sam build``
made it (wheels for the template's Python: they import only in an image of that Python).
"""

from __future__ import annotations

import json
import os
import re
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


def template_python() -> str:
    """The functions' Python in template.yaml (``Runtime: python3.13`` -> ``3.13``)."""
    [version] = re.findall(r"^\s+Runtime: python(\d+\.\d+)$", (REPO / "template.yaml").read_text(), re.MULTILINE)
    return version


@pytest.fixture(scope="module")
def lambda_python(docker_client: Any) -> str:
    """``hatchway/lambda-python`` for the template's Python (its base image built first if need be)."""
    from hatchway.errors import Unavailable
    from hatchway.executors.containers.images import build_lambda_python

    try:
        tag = build_lambda_python(docker_client, template_python())
    except Unavailable as exc:
        pytest.fail(f"hatchway/lambda-python:{template_python()} could not be built: {exc.message}")
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


def sam_env(docker_host: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DOCKER_HOST": docker_host,
        # no account lookup (no network), no telemetry, a home of its own
        "AWS_ENDPOINT_URL_STS": "http://127.0.0.1:9",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SAM_CLI_TELEMETRY": "0",
        "HOME": str(tmp_path),
    }


def sam_invoke(
    sam: str, docker_host: str, tmp_path: Path, template: str, function: str, event: str, *extra: str
) -> dict[str, Any]:
    env = sam_env(docker_host, tmp_path)
    done = subprocess.run(
        [sam, "local", "invoke", function, "--template", str(REPO / template), "--force-image-build",
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


def test_sam_build_then_local_invoke_runs_the_built_api_function_on_the_templates_python(
    sam: str, docker_host: str, docker_client: Any, lambda_python: str, tmp_path: Path
) -> None:
    # Given the image the built function runs on has the template's Python (no other would import
    # the wheels sam build installs for it, and sam would still exit 0)
    version = docker_client.containers.run(
        lambda_python, ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"], entrypoint="python3", remove=True
    )
    assert version.decode().strip() == template_python()
    # When sam build makes the functions (samconfig.toml: in the source folder, one install for all)
    build = tmp_path / "build"
    done = subprocess.run(
        [sam, "build", "--template", str(REPO / "template.yaml"), "--build-dir", str(build)],
        cwd=REPO, env=sam_env(docker_host, tmp_path), capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # Then every function got the code and its dependencies for that Python, and no virtualenv
    for name in ("ApiFunction", "EventsFunction", "PipelineFunction", "RunnerFunction", "SweeperFunction"):
        artifacts = build / name
        assert (artifacts / "handlers" / "api.py").is_file() and (artifacts / "hatchway" / "__init__.py").is_file()
        tag = template_python().replace(".", "")
        assert list((artifacts / "pydantic_core").glob(f"*.cpython-{tag}-x86_64-linux-gnu.so")), name
        assert not (artifacts / ".venv").exists() and not (artifacts / ".venv-sam").exists()
        # without what only the CLI and `hatchway serve` use (infra/sam/lambda_requirements.py)
        assert not [p.name for p in artifacts.iterdir() if p.name in ("rich", "pygments", "uvicorn", "yaml")], name
    # And sam local invoke of the built API function answers like `hatchway serve`
    response = sam_invoke(
        sam, docker_host, tmp_path, str(build / "template.yaml"), "ApiFunction", "health.json",
        "--invoke-image", lambda_python,
        "--parameter-overrides", "BootstrapToken=sam-local-bootstrap-token-0000 VpcId=vpc-0 SubnetIds=subnet-0",
    )  # fmt: skip
    assert response.get("statusCode") == 200, response
    assert json.loads(response["body"])["status"] == "ok"
