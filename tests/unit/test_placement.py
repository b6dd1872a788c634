"""Which executor runs what (moved here from test_containers.py with the code they test, ex
``executors.Executors``): images go to containers, others to processes, metadata may choose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hatchway.domain.attempts import AttemptResult
from hatchway.domain.runs import Mode
from hatchway.domain.spec import ActionSpec
from hatchway.errors import Unavailable, ValidationFailed
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


class Engine:
    """A run engine (ports.RunEngine) that records what it was asked."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.prepared: list[str] = []
        self.closed = 0

    def check(self, spec: ActionSpec, invoked: str) -> None: ...

    def prepare(self, project_id: str, spec: ActionSpec, environment: str) -> None:
        self.prepared.append(spec.name)
        self.environment = environment

    def close(self) -> None:
        self.closed += 1


def test_a_run_engine_takes_the_runs_of_every_action_but_http_ones() -> None:
    warm, http, batch, ecs = Named("lambda"), Named("http"), Engine("batch"), Engine("ecs")
    made: list[str] = []

    def make_ecs() -> Any:
        made.append("ecs")
        return ecs

    placement = Placement(warm, http=http, engine=batch, engines={"ecs": make_ecs})  # type: ignore[arg-type]
    boxed = spec(image_uri="img")
    assert placement.engine_for(boxed) is batch
    assert placement.pick(boxed, Mode.ASYNC) is batch and placement.executor_for(boxed, Mode.SYNC) is warm
    assert placement.engine_for(spec(http={"url": "http://x"})) is None
    with pytest.raises(Unavailable):
        placement.executor_for(boxed, Mode.ASYNC)
    placement.prepare("p", boxed, "dev")
    assert warm.prepared == ["a"] and batch.prepared == ["a"] and batch.environment == "dev"
    assert placement.engine_named("batch") is batch and made == []
    assert placement.engine_named("ecs") is placement.engine_named("ecs") is ecs and made == ["ecs"]
    assert placement.describe() == "lambda (sync), batch (runs)"
    placement.close()
    assert (batch.closed, ecs.closed) == (1, 1)


def test_without_a_sync_executor_sync_calls_are_refused_and_registration_prepares_the_engine() -> None:
    batch = Engine("batch")
    placement = Placement(None, engine=batch)  # type: ignore[arg-type]
    boxed = spec(image_uri="img")
    with pytest.raises(ValidationFailed) as err:
        placement.pick(boxed, Mode.SYNC)
    assert "async runs only" in err.value.message
    placement.prepare("p", boxed, "dev")
    assert batch.prepared == ["a"] and placement.engine_for(boxed) is batch
