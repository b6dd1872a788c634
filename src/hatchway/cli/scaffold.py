"""``hatchway init``: a new action project that runs on every executor from the first minute."""

from __future__ import annotations

import json
from pathlib import Path

from hatchway.domain.spec import ACTION_NAME_RE

MAIN = '''"""{name}: a hatchway action.

Run locally:   hatchway actions create --from-file action.json && hatchway run {name} -p greeting=hi --wait
Sync action:   hatchway sync {name} check -p greeting=hi
Time limits:   action.json's "timeout" is in minutes (10 = ten minutes); a run's own
               `hatchway run --timeout` and the API's timeout_seconds are in seconds.
"""

from __future__ import annotations

from hatchway import runtime as hw


@hw.sync_action("check")
def check(ctx: hw.Context) -> dict[str, object]:
    """A quick check a UI can call (answers within 30 s)."""
    greeting = ctx.param("greeting", "hello")
    if not greeting.strip():
        raise hw.UserError("greeting must not be blank")
    return {{"ok": True, "length": len(greeting)}}


@hw.run_action
def run(ctx: hw.Context) -> dict[str, object]:
    """The asynchronous work. Print to log; return the result; export named values."""
    greeting = ctx.param("greeting", "hello")
    times = ctx.param("times", 1, int)
    for index in range(times):
        print(f"{{index + 1}}: {{greeting}}")
    hw.export("printed", times)
    return {{"greeting": greeting, "times": times}}


if __name__ == "__main__":
    hw.main()
'''

DOCKERFILE = """# Build with `hatchway actions create --from-file action.json` and the docker executor,
# or `docker build -t {name} .`; the base image carries Python and the hatchway runtime adapter.
ARG BASE=hatchway/action-base:3.11
FROM ${{BASE}}
WORKDIR /action
COPY main.py ./
"""

TEST = '''"""Run the action the way the gateway does: a data dir with config.json, then check out/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def invoke(tmp_path: Path, action: str, parameters: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "out").mkdir()
    (tmp_path / "config.json").write_text(json.dumps({{"action": action, "parameters": parameters, "run": {{}}}}))
    env = {{**os.environ, "HATCHWAY_DATA_DIR": str(tmp_path)}}
    return subprocess.run([sys.executable, str(HERE / "main.py")], env=env, capture_output=True, text=True, check=False)


def test_run_writes_result_and_exports(tmp_path: Path) -> None:
    done = invoke(tmp_path, "run", {{"greeting": "hi", "times": "2"}})
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "result.json").read_text()) == {{"greeting": "hi", "times": 2}}
    assert json.loads((tmp_path / "out" / "exports.json").read_text()) == {{"printed": 2}}


def test_check_answers_json(tmp_path: Path) -> None:
    done = invoke(tmp_path, "check", {{"greeting": "hi"}})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {{"ok": True, "length": 2}}


def test_blank_greeting_is_a_user_error(tmp_path: Path) -> None:
    done = invoke(tmp_path, "check", {{"greeting": " "}})
    assert done.returncode == 1
    assert "must not be blank" in done.stderr
'''


def scaffold(name: str, directory: Path) -> Path:
    """Create ``directory`` with action.json, main.py, Dockerfile and test_main.py."""
    if not ACTION_NAME_RE.match(name):
        raise ValueError("an action name is lowercase letters, digits and '-', at most 63 characters")
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} exists and is not empty")
    directory.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": name,
        "short_description": f"{name} (scaffolded by hatchway init)",
        "parameters": [
            {"name": "greeting", "description": "what to print", "default": "hello"},
            {"name": "times", "description": "how many times", "default": "1"},
        ],
        "sync_actions": ["check"],
        "container_parameters": {"entry_point": ["python3"], "command": ["main.py"]},
        "docker_config": {"dockerfile": "Dockerfile", "context": "."},
        "timeout": 10,
        "tags": [],
    }
    (directory / "action.json").write_text(json.dumps(spec, indent=4) + "\n")
    (directory / "main.py").write_text(MAIN.format(name=name))
    (directory / "Dockerfile").write_text(DOCKERFILE.format(name=name))
    (directory / "test_main.py").write_text(TEST.format())
    return directory
