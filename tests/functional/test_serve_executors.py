"""`hatchway serve` with a container executor the host cannot give: one line and an exit, not a
traceback (issue 17, item 6). ``auto`` falling back when the docker package is missing is in
tests/integration/test_docker.py (it needs an engine that answers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, child_env, free_port


def without_docker_package(folder: Path) -> str:
    """A PYTHONPATH on which ``import docker`` fails, as after a plain ``pip install hatchway``."""
    shadow = folder / "no-docker" / "docker"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'docker'\", name='docker')\n")
    return os.pathsep.join([str(shadow.parent), str(REPO / "src")])


def serve(home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hatchway", "serve", "--port", str(free_port())],
        env=child_env(home, COLUMNS="300", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("executor", ["docker", "lambda-local"])
def test_an_explicit_container_executor_without_an_engine_is_one_line(tmp_path: Path, executor: str) -> None:
    dead = f"unix://{tmp_path}/no-engine/docker.sock"
    done = serve(tmp_path / "home", HATCHWAY_EXECUTOR=executor, DOCKER_HOST=dead)
    assert done.returncode == 1, done
    [line] = done.stderr.strip().splitlines()
    assert f"HATCHWAY_EXECUTOR={executor}, but no Docker engine answers at {dead}" in line
    assert "Traceback" not in done.stdout + done.stderr


def test_an_explicit_container_executor_without_the_docker_package_is_one_line(tmp_path: Path) -> None:
    done = serve(tmp_path / "home", HATCHWAY_EXECUTOR="docker", PYTHONPATH=without_docker_package(tmp_path))
    assert done.returncode == 1, done
    [line] = done.stderr.strip().splitlines()
    assert "HATCHWAY_EXECUTOR=docker, but the docker package is missing: pip install docker (the docker extra)" in line
    assert "Traceback" not in done.stdout + done.stderr
