"""Clients generated from the published /openapi.json by third-party generators: without a single
warning, and (Python) driving a real ``hatchway serve`` through register -> run -> wait -> logs ->
a typed 404. openapi-python-client comes with the dev extras; openapi-typescript and typescript
are installed from npm into a temporary folder (skipped, saying so, when npm is missing)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ADMIN_TOKEN, LiveServer, wait_until

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
SAYS_HI = {
    "name": "says-hi",
    "container_parameters": {
        "entry_point": [sys.executable, "-c"],
        "command": ["import os; print('hi from', os.environ['HATCHWAY_RUN_ID'])"],
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("generated")).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def spec_file(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "openapi.json"
    path.write_text(httpx.get(server.url + "/openapi.json").text)
    return path


def test_the_spec_names_its_schemas_and_operations(spec_file: Path) -> None:
    spec: dict[str, Any] = json.loads(spec_file.read_text())
    operations = [op for ops in spec["paths"].values() for op in ops.values()]
    ids = [op.get("operationId") for op in operations]
    # every operation has a short unique id, the raw file routes included
    assert all(ids) and len(set(ids)) == len(ids) and max(len(i) for i in ids) <= 24
    assert {"submitRun", "callSyncAction", "getRun", "getRunLogs", "putFile", "getArtifact"} <= set(ids)
    # one Error on every error answer, the Run defined once
    for op in operations:
        for code, answer in op["responses"].items():
            if int(code) >= 400:
                assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    run_statuses = json.dumps(["ENQUEUED", "INPROGRESS", "SUCCESSFUL", "FAILED", "TERMINATING", "TERMINATED"])
    assert json.dumps(spec).count(run_statuses) == 1  # RunStatus, once
    schemas = spec["components"]["schemas"]
    assert "msg" in schemas["ValidationError"]["properties"]
    submit = next(op for op in operations if op["operationId"] == "submitRun")
    assert "Location" in submit["responses"]["202"]["headers"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in submit["parameters"])


def test_openapi_python_client_generates_without_warnings_and_drives_a_run(
    server: LiveServer, spec_file: Path, tmp_path: Path
) -> None:
    if importlib.util.find_spec("openapi_python_client") is None:
        pytest.skip("openapi-python-client is not installed (pip install -e '.[dev]')")
    out = tmp_path / "hatchway_generated"
    done = subprocess.run(
        [str(BIN / "openapi-python-client"), "generate", "--path", str(spec_file), "--meta", "none",
         "--output-path", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed
    assert "warning" not in printed.lower(), printed
    sys.path.insert(0, str(tmp_path))
    try:
        drive(importlib.import_module("hatchway_generated"), server)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("hatchway_generated")]:
            del sys.modules[name]


def drive(generated: Any, server: LiveServer) -> None:
    """register -> run -> wait -> logs -> a typed 404, through the generated client."""
    api = importlib.import_module("hatchway_generated.api.actions.register_action")
    submit = importlib.import_module("hatchway_generated.api.runs.submit_run")
    get_run = importlib.import_module("hatchway_generated.api.runs.get_run")
    logs = importlib.import_module("hatchway_generated.api.runs.get_run_logs")
    models = importlib.import_module("hatchway_generated.models")
    client = generated.AuthenticatedClient(base_url=server.url, token=ADMIN_TOKEN, raise_on_unexpected_status=True)
    with client:
        registered = api.sync_detailed("proj_local", client=client, body=models.ActionSpec.from_dict(SAYS_HI))
        assert registered.status_code in (200, 201) and isinstance(registered.parsed, models.Action)
        assert registered.parsed.name == "says-hi"
        started = submit.sync_detailed(
            "proj_local", "says-hi", client=client, body=models.RunRequestBody.from_dict({"parameters": {}})
        )
        assert started.status_code == 202 and isinstance(started.parsed, models.Run), started.content
        run_id = started.parsed.id
        assert started.parsed.status == models.RunStatus.ENQUEUED

        def finished() -> Any:
            run = get_run.sync("proj_local", run_id, client=client)
            assert isinstance(run, models.Run)
            return run if run.status in (models.RunStatus.SUCCESSFUL, models.RunStatus.FAILED) else None

        run = wait_until(finished, 60, 0.1, "the run to end")
        assert run.status == models.RunStatus.SUCCESSFUL
        page = logs.sync("proj_local", run_id, client=client)
        assert isinstance(page, models.LogPage)
        assert any(f"hi from {run_id}" in entry.msg for entry in page.items)
        assert all(isinstance(entry, models.LogEntry) for entry in page.items)
        missing = get_run.sync_detailed("proj_local", "run_01JZZZZZZZZZZZZZZZZZZZZZZZ", client=client)
        assert missing.status_code == 404 and isinstance(missing.parsed, models.Error)
        assert missing.parsed.code == 404 and missing.parsed.error == "Not found"


def test_openapi_typescript_generates_without_warnings_and_compiles(spec_file: Path, tmp_path: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: openapi-typescript comes from the npm registry")
    installed = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--silent", "openapi-typescript@7", "typescript@5"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    if installed.returncode != 0:
        pytest.skip(f"npm could not install openapi-typescript: {installed.stderr.strip()[-300:]}")
    made = subprocess.run(
        [str(tmp_path / "node_modules/.bin/openapi-typescript"), str(spec_file), "-o", str(tmp_path / "api.d.ts")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    printed = made.stdout + made.stderr
    assert made.returncode == 0, printed
    assert "warn" not in printed.lower() and "⚠" not in printed, printed
    usage = tmp_path / "use.ts"
    usage.write_text(
        'import type { components, operations } from "./api";\n'
        'type Run = components["schemas"]["Run"];\n'
        'const status: Run["status"] = "ENQUEUED";\n'
        'type NotFound = operations["getRun"]["responses"]["404"]["content"]["application/json"];\n'
        'const error: NotFound = { status: "error", error: "Not found", code: 404, message: "no run" };\n'
        "export { status, error };\n"
    )
    compiled = subprocess.run(
        [str(tmp_path / "node_modules/.bin/tsc"), "--noEmit", "--strict", "api.d.ts", "use.ts"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
