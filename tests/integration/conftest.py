"""Fixtures of the container tier: a real dockerd, the base image, the Lambda emulator.

One daemon per test session: the one ``.ci/run`` started (``HATCHWAY_TEST_DOCKER_HOST``), else a
private one started here (``tests/dockerd.py``: own paths, own bridge) and stopped at the end.
Tests that need it skip with the reason only where no engine can be had (not root, no dockerd
and no apt-get). The base image is built once per data root (its build is cached by its recipe).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import dockerd

SAM_VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hatchway" / "sam"


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    """A Docker engine for this session: the given one, or a private daemon."""
    given = os.environ.get("HATCHWAY_TEST_DOCKER_HOST")
    if given:
        yield given
        return
    why = dockerd.ensure_installed()
    if why:
        pytest.skip(f"no Docker engine: {why}")
    daemon = dockerd.start()
    try:
        yield daemon.host
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def docker_client(docker_host: str) -> Iterator[Any]:
    from hatchway.executors.containers.client import docker_client as make

    client = make(docker_host, timeout=300)
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """``hatchway/action-base:3.11``, built (once per data root) as ``infra/images/build`` does."""
    from hatchway.errors import Unavailable
    from hatchway.executors.containers.images import build_base

    try:
        return build_base(docker_client, "3.11")
    except Unavailable as exc:
        pytest.fail(f"the base image could not be built: {exc.message}")


@pytest.fixture(scope="session")
def rie_path() -> str:
    """The Runtime Interface Emulator of aws-sam-cli (installed into its own virtualenv if missing)."""
    from hatchway.executors.containers.lambda_local import find_rie

    found = find_rie(os.environ.get("HATCHWAY_LAMBDA_RIE")) or _rie_in(SAM_VENV)
    if found is None:
        done = subprocess.run(
            [sys.executable, "-m", "venv", str(SAM_VENV)], capture_output=True, text=True, check=False
        )
        if done.returncode == 0:
            subprocess.run(
                [str(SAM_VENV / "bin" / "pip"), "install", "-q", "aws-sam-cli"], capture_output=True, check=False
            )
        found = _rie_in(SAM_VENV)
    if found is None:
        pytest.skip("the Lambda Runtime Interface Emulator is missing (pip install aws-sam-cli failed)")
    return str(found)


def _rie_in(venv: Path) -> Path | None:
    for path in venv.glob("lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64"):
        return path
    return None
