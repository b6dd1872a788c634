"""Images registered for the AWS engines, probed at registration on a real dockerd (moto for AWS).

An image that cannot run hatchway's container side for its engine - the base image alone for
Batch/ECS (its runtime lacks the package and boto3), an ENTRYPOINT that ignores Batch's command,
no awslambdaric for a Lambda function - is refused with a 422 naming the fix, and nothing is
made; a complete image is accepted by all three. Also: the built base image carries the whole
runtime.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

import hatchway
from hatchway.aws.aws_lambda import LambdaExecutor
from hatchway.aws.batch import BatchEngine
from hatchway.aws.clients import AwsClients
from hatchway.aws.ecs import EcsEngine
from hatchway.aws.images import ImageProbe
from hatchway.errors import ValidationFailed
from hatchway.wiring import build_placement
from tests.awsmock import REGION, aws_services, aws_settings, make_infrastructure, moto_in_process
from tests.functional.awsstack import ACTION, ADMIN, ENV, P

pytestmark = [pytest.mark.integration, pytest.mark.docker]

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/probe"


def build(client: Any, context: Path, tag: str, dockerfile: str, base: str) -> str:
    (context / "Dockerfile").write_text(dockerfile)
    import docker.errors

    try:
        client.images.build(path=str(context), tag=tag, buildargs={"BASE": base}, rm=True, forcerm=True)
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream") or chunk.get("error") or "") for chunk in exc.build_log)
        pytest.fail(f"{tag} did not build: {log[-3000:]}")
    return tag


@pytest.fixture(scope="module")
def images(docker_client: Any, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The base image as `hatchway init` gives it; one with hatchway[aws] installed; that one with
    an ENTRYPOINT of its own that ignores its command."""
    docker_client.images.get(base_image).tag(f"{REGISTRY}/base-only", "1")
    # hatchway[aws] as a pip install puts it in an image: its dependencies from wheels staged on this
    # host (the engine's build containers reach no index), the package's source on the path
    from hatchway.executors.containers.images import _project_requirements, _wheels

    package = tmp_path_factory.mktemp("package")
    shutil.copytree(_wheels("3.11", lambda line: None, _project_requirements()), package / "wheels",
                    ignore=shutil.ignore_patterns(".complete"))  # fmt: skip
    shutil.copytree(Path(hatchway.__file__).parent, package / "hatchway",
                    ignore=shutil.ignore_patterns("__pycache__", "ui"))  # fmt: skip
    install = (
        "ARG BASE\nFROM ${BASE}\nCOPY . /tmp/package/\n"
        "RUN pip install --no-cache-dir --no-index --find-links /tmp/package/wheels $(ls /tmp/package/wheels/*.whl)"
        " && rm -rf /opt/hatchway/lib/hatchway && mv /tmp/package/hatchway /opt/hatchway/lib/hatchway"
        " && rm -rf /tmp/package\n"
    )
    full = build(docker_client, package, f"{REGISTRY}/full:1", install, base_image)
    ignoring = 'ENTRYPOINT ["python3", "-c", "print(\\"my own thing\\")"]'
    own = build(docker_client, tmp_path_factory.mktemp("own"), f"{REGISTRY}/own-entrypoint:1",
                f"ARG BASE\nFROM ${{BASE}}\n{ignoring}\n", full)  # fmt: skip
    return {"base-only": f"{REGISTRY}/base-only:1", "full": full, "own-entrypoint": own}


@pytest.fixture
def aws(tmp_path: Path, docker_host: str) -> Iterator[tuple[Any, Any]]:
    """A gateway on moto whose Lambda, Batch and ECS engines have the test dockerd at hand."""
    with moto_in_process():
        session = boto3.session.Session(region_name=REGION)
        settings = aws_settings(tmp_path / "home").with_(
            **make_infrastructure(session, "hwprobe"), docker_host=docker_host
        )
        clients = AwsClients(REGION, None, session)
        batch, ecs = BatchEngine.from_settings(settings, clients), EcsEngine.from_settings(settings, clients)
        placement = build_placement(settings, sync=LambdaExecutor.from_settings(settings, clients), engine=batch)
        yield aws_services(settings, session, placement), ecs


def spec_with(image: str) -> dict[str, Any]:
    return {**ACTION, "image_uri": image, "container_parameters": {"command": ["python3", "-c", "print(1)"]}}


def test_the_base_image_alone_cannot_run_batch_or_ecs_runs(aws: tuple[Any, Any], images: dict[str, str]) -> None:
    services, ecs = aws
    # When an action on the base image alone is registered for Batch (with sync actions: Lambda)
    with pytest.raises(ValidationFailed) as refused:
        services.actions.register(ADMIN, P, ENV, spec_with(images["base-only"]))
    # Then it is a 422 at image_uri naming what is missing and what to install, and nothing is made
    [detail] = refused.value.details
    assert detail["loc"] == ["body", "image_uri"] and detail["type"] == "image_unsupported"
    assert "cannot run AWS Batch runs" in detail["msg"] and "No module named" in detail["msg"]
    assert "pip install 'hatchway[aws]'" in detail["msg"]
    assert services.repos.actions.get_action(P, ENV, "echo") is None
    assert services.placement.engine.client.describe_job_definitions()["jobDefinitions"] == []
    functions = services.placement.sync.client.list_functions()["Functions"]
    assert not [f for f in functions if f["FunctionName"].startswith(services.settings.aws.resource_prefix)]
    # and ECS says the same; as a Lambda function it can answer (awslambdaric and the runtime are in it)
    with pytest.raises(ValidationFailed, match="cannot run ECS runs"):
        ecs.vet(P, parsed(images["base-only"]))
    services.placement.sync.vet(P, parsed(images["base-only"]))


def test_an_entrypoint_that_ignores_its_command_cannot_run_batch_jobs(
    aws: tuple[Any, Any], images: dict[str, str]
) -> None:
    services, ecs = aws
    image = parsed(images["own-entrypoint"])
    with pytest.raises(ValidationFailed) as refused:
        services.placement.engine.vet(P, image)
    message = refused.value.details[0]["msg"]
    assert "ENTRYPOINT does not run the command it is given" in message and "exited 0 without running it" in message
    # ECS and Lambda replace the entry point: the same image serves them
    ecs.vet(P, image)
    services.placement.sync.vet(P, image)


def test_a_complete_image_is_accepted_for_every_engine(aws: tuple[Any, Any], images: dict[str, str]) -> None:
    services, ecs = aws
    record = services.actions.register(ADMIN, P, ENV, spec_with(images["full"])).record
    assert record.spec["image_uri"] == images["full"]
    ecs.vet(P, parsed(images["full"]))


def test_an_image_the_engine_does_not_have_is_not_probed(aws: tuple[Any, Any]) -> None:
    # (a registration does not wait for a download; AWS pulls it when a run starts)
    services, _ = aws
    probe = ImageProbe(services.settings.executors.docker_host)
    assert probe.problem(f"{REGISTRY}/not-here:1", "batch") is None


def test_the_base_image_carries_the_whole_runtime(docker_client: Any, base_image: str) -> None:
    script = (
        "import pathlib, hatchway.runtime as r; root = pathlib.Path(r.__file__).parent;"
        "print(sorted(p.name for p in root.glob('*.py')))"
    )
    listed = docker_client.containers.run(base_image, ["python3", "-c", script], remove=True).decode()
    sources = sorted(path.name for path in (Path(hatchway.__file__).parent / "runtime").glob("*.py"))
    assert listed.strip() == str(sources)


def parsed(image: str) -> Any:
    from hatchway.domain.spec import parse_spec

    return parse_spec(spec_with(image))
