"""runtime/ alone, as action images carry it: it imports only itself and the standard library.

Each test copies the runtime exactly as the base image build stages it
(:func:`hatchway.executors.containers.images.copy_runtime`) and runs a Python that sees nothing
else: no site-packages (``-S``), no environment or working directory on its path (``-I``).
import-linter's ``runtime-stdlib`` contract says the same statically; these prove it at run time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import hatchway
from hatchway.executors.containers.images import copy_runtime
from hatchway.runtime.redact import HIDDEN
from hatchway.runtime.remote import MISSING_PACKAGE

PACKAGE = Path(hatchway.__file__).parent


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A directory holding ``hatchway/`` as the base image has it."""
    root = tmp_path / "image"
    copy_runtime(root)
    return root


def test_the_image_gets_the_whole_runtime_and_nothing_else(image: Path) -> None:
    copied = {path.relative_to(image / "hatchway").as_posix() for path in (image / "hatchway").rglob("*")}
    sources = {
        path.relative_to(PACKAGE).as_posix()
        for path in (PACKAGE / "runtime").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert "runtime/adapter.py" in sources and "runtime/redact.py" in sources
    assert copied - {"runtime"} == sources | {"__init__.py"}


def test_every_runtime_module_imports_with_the_standard_library_alone(image: Path) -> None:
    # Given a Python that sees only the standard library and the copy
    script = f"""
import json, pkgutil, sys
sys.path.insert(0, {str(image)!r})
import hatchway.runtime
names = [m.name for m in pkgutil.walk_packages(hatchway.runtime.__path__, "hatchway.runtime.")]
for name in names:
    __import__(name)
stdlib = set(sys.stdlib_module_names) | {{"__main__", "hatchway"}}
ours = sorted(m for m in sys.modules if m.split(".")[0] == "hatchway")
print(json.dumps({{
    "imported": names,
    "hatchway": ours,
    "foreign": sorted(m for m in sys.modules if m.split(".")[0] not in stdlib),
    "files": [getattr(sys.modules[m], "__file__", None) or "" for m in ours],
}}))
"""
    # When it imports every module of the runtime
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    # Then each one loads, from the copy, and pulls in nothing but the runtime and the standard library
    assert {"hatchway.runtime.adapter", "hatchway.runtime.rie_bridge", "hatchway.runtime.redact"} <= set(
        seen["imported"]
    )
    assert "hatchway.runtime.remote" in seen["imported"]  # the Batch/ECS container side
    assert all(name == "hatchway" or name.startswith("hatchway.runtime") for name in seen["hatchway"]), seen["hatchway"]
    assert seen["foreign"] == []
    assert all(path.startswith(str(image)) for path in seen["files"]), seen["files"]


def test_the_adapter_answers_an_invocation_from_the_copy_alone(image: Path, tmp_path: Path) -> None:
    # Given an invocation of /bin/echo that prints a secret the gateway asks to hide
    payload = {
        "hatchway": 1,
        "config": {"action": "run", "run": {"id": "run_isolated", "attempt": 1}, "parameters": {}},
        "argv": ["/bin/echo", "token is s3cr3t-value"],
        "env": {},
        "timeout_seconds": 20,
        "redact": ["s3cr3t-value"],
        "data_root": str(tmp_path),
    }
    # When `python -m hatchway.runtime.adapter` runs it with no site-packages and no environment
    done = subprocess.run(
        [sys.executable, "-S", "-E", "-m", "hatchway.runtime.adapter"],
        input=json.dumps(payload),
        cwd=image,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then its outcome reports the run, with the secret hidden in the log
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["exit_code"] == 0 and outcome["start_error"] is None and not outcome["timed_out"]
    assert [log[2] for log in outcome["logs"]] == [f"token is {HIDDEN}"]


def test_the_runtime_redacts_with_the_standard_library_alone(image: Path) -> None:
    # Given the runtime's files as an action image gets them, and a Python without site-packages
    script = (
        "import sys; from hatchway.runtime import redact as r; assert 'ahocorasick_rs' not in sys.modules;"
        "print(r.Redactor(['s3cr3t-val']).text(sys.argv[1]))"
    )
    # When it redacts
    done = subprocess.run(
        [sys.executable, "-S", "-c", script, "a s3cr3t-val b"], cwd=image, capture_output=True, text=True
    )
    # Then it imports nothing else and hides the secret
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"a {HIDDEN} b"


def test_a_batch_attempt_without_the_package_says_what_to_install_in_one_line(image: Path) -> None:
    # Given the base image's runtime alone (no hatchway package, no site-packages)
    # When a Batch job or ECS task starts its attempt
    done = subprocess.run(
        [sys.executable, "-S", "-E", "-m", "hatchway.runtime.adapter", "--run", "run_x"],
        cwd=image,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then it fails with one line naming what to install, and no traceback
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(MISSING_PACKAGE) and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
