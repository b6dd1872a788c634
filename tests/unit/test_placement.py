"""Which executor runs what (moved here from test_containers.py with the code they test, ex
``executors.Executors``): images go to containers, others to processes, metadata may choose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hatchway.domain.attempts import AttemptResult
from hatchway.domain.runs import Mode
from hatchway.domain.spec import ActionSpec
from hatchway.errors import ValidationFailed
from hatchway.executors.base import BaseAttemptExecutor
from hatchway.services.placement import Placement
from hatchway.wiring import build_placement
from tests.conftest import make_settings


def spec(**fields: Any) -> ActionSpec:
    return ActionSpec.model_validate({"name": "a", **fields})


class Named(BaseAttemptExecutor):
    def __init__(self, name: str) -> None:
        self.name = name
        self.prepared: list[str] = []

    def execute(self, invocation: Any, collector: Any, cancel: Any) -> AttemptResult:
        raise NotImplementedError

    def prepare(self, project_id: str, spec: ActionSpec) -> None:
        self.prepared.append(spec.name)


def test_images_go_to_containers_others_to_processes_and_metadata_may_choose() -> None:
    process, warm, docker = Named("process"), Named("lambda-local"), Named("docker")
    executors = Placement(
        process,
        images=(warm, docker),
        named={"process": (process, process), "docker": (docker, docker), "lambda-local": (warm, docker)},
        mode="auto",
    )
    boxed = spec(image_uri="img")
    host = spec(container_parameters={"command": ["x"]})
    assert executors.pick(boxed, Mode.SYNC) is warm
    assert executors.pick(boxed, Mode.ASYNC) is docker
    assert executors.pick(host, Mode.SYNC) is process
    chosen = spec(image_uri="img", metadata={"executor": "docker"})
    assert executors.pick(chosen, Mode.SYNC) is docker
    with pytest.raises(ValidationFailed) as err:
        executors.pick(spec(image_uri="img", metadata={"executor": "batch"}), Mode.SYNC)
    assert "batch" in err.value.message
    assert "lambda-local (sync), docker (runs) for actions with an image" in executors.describe()


def test_auto_without_an_engine_runs_processes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", executor="auto", docker_host=f"unix://{tmp_path}/none.sock")
    executors = build_placement(settings)
    try:
        assert executors.sync.name == "process"
        assert executors.images is None
        assert "no Docker engine" in executors.describe()
        pinned = spec(container_parameters={"command": ["x"]}, metadata={"executor": "process"})
        assert executors.pick(pinned, Mode.SYNC).name == "process"
        with pytest.raises(ValidationFailed):
            executors.pick(spec(image_uri="i", metadata={"executor": "docker"}), Mode.SYNC)
    finally:
        executors.close()
