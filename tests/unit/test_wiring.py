"""The composition root: its registries name every executor the settings accept, and importing it
stays cheap (no boto3, docker or uvicorn until a process uses them)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hatchway import wiring
from hatchway.config import EXECUTOR_NAMES


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
