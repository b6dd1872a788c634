"""The composition root: its registries name every executor the settings accept, importing it
stays cheap (no boto3, docker or uvicorn until a process uses them), and it picks each process's
run dispatcher from what serves it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hatchway import wiring
from hatchway.config import EXECUTOR_NAMES
from hatchway.errors import Unavailable
from hatchway.services.queue import NoDispatcher
from hatchway.wiring import build_services
from tests.conftest import make_settings


def test_settings_name_exactly_the_registered_executors_without_importing_them() -> None:
    registry = {**wiring.EXECUTORS, **wiring.ENGINES}  # (moved here from test_runs.py with the registry)
    assert tuple(registry) == EXECUTOR_NAMES
    # checking settings loads no executor module (config sits below the executors)
    probe = "import sys; from hatchway.config import Settings; Settings.from_env({}); print(sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "hatchway.config" in loaded
    assert "hatchway.executors" not in loaded


def test_attempt_executors_and_run_engines_are_told_apart() -> None:
    assert not set(wiring.EXECUTORS) & set(wiring.ENGINES)


def test_an_unknown_name_says_what_there_is() -> None:
    with pytest.raises(ValueError, match="unknown executor 'nope'; choose one of process"):
        wiring.load("nope", wiring.EXECUTORS, "executor")


def test_importing_the_wiring_imports_no_heavy_dependency() -> None:
    heavy = ("boto3", "botocore", "docker", "uvicorn")
    code = f"import sys, hatchway.wiring; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "[]"


def test_a_process_with_a_pool_hands_its_runs_to_the_pools_queue(tmp_path: Path) -> None:
    services = build_services(make_settings(tmp_path / "home"), pool=True)
    try:
        assert services.queue is not None
        assert services.runs.dispatcher is services.queue and services.attempts.dispatcher is services.queue
        assert services.sweeper.dispatcher is None  # the pool sweeps leases itself
        assert services.stats.capacity() is None  # until a pool attaches
        services.queue.attach(4, lambda: 1)
        assert services.stats.capacity() == (4, 1)
    finally:
        services.close()


def test_without_a_pool_runs_go_to_the_runner_function_the_settings_name(tmp_path: Path) -> None:
    from hatchway.aws.dispatch import LambdaDispatcher

    services = build_services(make_settings(tmp_path / "home", runner_function="hatchway-runner"))
    try:
        assert services.queue is None
        dispatcher = services.runs.dispatcher
        assert isinstance(dispatcher, LambdaDispatcher) and dispatcher.function == "hatchway-runner"
        assert services.sweeper.dispatcher is dispatcher  # the sweep hands due runs to the same function
    finally:
        services.close()
    alone = build_services(make_settings(tmp_path / "alone"))
    try:
        assert isinstance(alone.runs.dispatcher, NoDispatcher) and alone.sweeper.dispatcher is None
    finally:
        alone.close()


def test_one_process_builds_one_of_each_use_case(tmp_path: Path) -> None:
    services = build_services(make_settings(tmp_path / "home"))
    try:
        # the use cases share their collaborators: one placement, one secret box, one action service
        assert services.runs.placement is services.placement is services.actions.placement
        assert services.runs.actions is services.actions is services.pipelines.definitions.actions
        assert services.tenants.box is services.caches.box is services.pipelines.definitions.box
        assert (
            services.pipelines.steps.run_service is services.runs and services.dispatched.attempts is services.attempts
        )
    finally:
        services.close()


def test_building_the_services_of_the_embedded_default_imports_no_aws_or_docker(tmp_path: Path) -> None:
    # (powertools' logging imports the botocore package itself for its user agent; no client library)
    code = (
        "import sys; from hatchway.config import Settings; from hatchway.wiring import build_services; "
        f"build_services(Settings.from_env({{'HATCHWAY_HOME': {str(tmp_path)!r}, 'HATCHWAY_EXECUTOR': 'process'}})); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'docker', 'uvicorn'}))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "[]"


def test_the_step_functions_engine_is_made_on_first_use_of_a_pipeline(tmp_path: Path) -> None:
    # Given a process whose pipelines run on Step Functions, without the resources they need
    services = build_services(make_settings(tmp_path / "home", pipeline_engine="stepfunctions"))
    try:
        # Then building it needed neither those resources nor boto3's clients; the engine is the
        # Step Functions one, and the worker pool has no local engine to advance
        assert services.pipelines.engine.name == "stepfunctions" and services.pipelines.local is None
        # and the first pipeline use says what is missing, in the error tree
        with pytest.raises(Unavailable, match="HATCHWAY_STATES_ROLE_ARN"):
            services.pipelines.engine.retire("arn:aws:states:us-east-1:123456789012:stateMachine:x")
    finally:
        services.close()


def test_the_local_pipeline_engine_is_the_default_and_the_pools(tmp_path: Path) -> None:
    services = build_services(make_settings(tmp_path / "home"))
    try:
        assert services.pipelines.engine is services.pipelines.local
        assert services.pipelines.engine.name == "local"
    finally:
        services.close()
