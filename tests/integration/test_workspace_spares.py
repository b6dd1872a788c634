"""Workspaces are reused only when empty: no run ever sees what an earlier one left behind."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hatchway.client import Client
from hatchway.executors.process import ProcessExecutor
from hatchway.executors.sandbox import bwrap_works
from hatchway.executors.spares import Spares
from hatchway.runtime.contract import Workspace
from hatchway.wiring import bootstrap, build_services
from hatchway.worker import WorkerPool
from tests.conftest import inprocess_client, make_settings
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

#: lists the workspace it finds, then leaves behind what the parameter ``mess`` says
LOOK_AND_LITTER = """
import json, os, sys
root = os.environ["HATCHWAY_DATA_DIR"]
found = {name: sorted(os.listdir(os.path.join(root, name))) if os.path.isdir(os.path.join(root, name)) else "file"
         for name in os.listdir(root)}
mess = json.load(open(os.path.join(root, "config.json")))["parameters"].get("mess", "")
if mess == "files":
    for name in ("out/result-left.txt", "tmp/scratch", "in/extra", "loose"):
        open(os.path.join(root, name), "w").write("secret of the last run")
elif mess == "mode":
    os.chmod(os.path.join(root, "tmp"), 0o755)
elif mess == "symlink":
    os.rmdir(os.path.join(root, "out"))
    os.symlink("/tmp", os.path.join(root, "out"))
print(json.dumps(found))
"""
CLEAN = {"config.json": "file", "parameters.json": "file", "in": [], "out": [], "tmp": []}


@pytest.fixture(
    params=["none", "limits", pytest.param("bwrap", marks=pytest.mark.skipif(not bwrap_works(), reason="no bwrap"))]
)
def gateway_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Client, ProcessExecutor]]:
    settings = make_settings(tmp_path / "home", sandbox=request.param)
    services = build_services(settings, pool=True)
    bootstrap(services)
    pool = WorkerPool(services, size=2)
    pool.start()
    executor = services.placement.run
    assert isinstance(executor, ProcessExecutor)
    with inprocess_client(services) as hw:
        yield hw, executor
    pool.stop(2)
    services.close()


def spare_count(executor: ProcessExecutor) -> int:
    return len(list(executor.spares.dir.iterdir())) if executor.spares.dir.is_dir() else 0


def test_every_run_finds_a_clean_workspace_though_earlier_runs_littered(
    gateway_client: tuple[Client, ProcessExecutor],
) -> None:
    hw, executor = gateway_client
    command = {"entry_point": [sys.executable, "-c"], "command": [LOOK_AND_LITTER]}
    hw.register_action({"name": "look", "sync_actions": ["check"], "parameters": [{"name": "mess"}],
                        "container_parameters": command})  # fmt: skip
    # Given a run that leaves its workspace as it found it: its workspace becomes a spare
    assert hw.call_sync("look", "check", {"mess": ""})["ret"] == CLEAN
    wait_until(lambda: spare_count(executor) >= 1, 10, 0.02, "the clean workspace to be kept")
    for mess in ("files", "mode", "symlink", "", "files", ""):
        # When runs leave files, loosened permissions or a symlink behind, async and sync alike
        async_run = hw.wait(hw.start_run("look", {"mess": mess})["id"], timeout=30)
        sync_answer = hw.call_sync("look", "check", {"mess": mess})["ret"]
        # Then each run still found nothing but a fresh workspace
        assert async_run["status"] == "SUCCESSFUL"
        printed = [e["msg"] for e in hw.logs(async_run["id"])["items"] if e["k"] == "stdout"]
        assert [json.loads(line) for line in printed] == [CLEAN] and sync_answer == CLEAN, mess
    # and no littered workspace was kept
    for spare in executor.spares.dir.iterdir():
        assert sorted(os.listdir(spare)) == ["in", "out", "tmp"]
        assert all(not os.listdir(spare / name) and (spare / name).stat().st_mode & 0o777 == 0o700
                   for name in ("in", "out", "tmp"))  # fmt: skip


@pytest.mark.parametrize(
    ("litter", "is_kept"),
    [
        (lambda ws: None, True),
        (lambda ws: (ws.out / "result.json").write_text("{}"), False),
        (lambda ws: (ws.path / "config.json").write_text("{}"), False),
        (lambda ws: (ws.tmp / "dir").mkdir(), False),
        (lambda ws: ws.inputs.chmod(0o750), False),
        (lambda ws: ws.path.chmod(0o755), False),
        (lambda ws: (ws.out.rmdir(), (ws.path / "out").symlink_to(ws.tmp)), False),
    ],
    ids=["pristine", "output-file", "top-level-file", "nested-dir", "loosened-mode", "loosened-root", "symlink"],
)
def test_only_a_pristine_workspace_is_kept(tmp_path: Path, litter: object, is_kept: bool) -> None:
    # Given a workspace as an attempt leaves it, its contract files already deleted
    spares = Spares(tmp_path, "1-1")
    workspace = Workspace(tmp_path, "run_a-1").create({"parameters": {}})
    workspace.discard_parameters()
    litter(workspace)  # type: ignore[operator]
    # When it is handed back
    kept = spares.give(workspace)
    # Then only an untouched one is kept, and the next workspace takes its place
    assert kept is is_kept
    assert workspace.path.exists() is not is_kept
    following = Workspace(tmp_path, "run_b-1")
    assert spares.take(following) is is_kept
    if is_kept:
        assert sorted(os.listdir(following.path)) == ["in", "out", "tmp"]


def test_spares_of_dead_processes_are_removed_at_recovery(tmp_path: Path) -> None:
    # Given spares of a live process and of one that is gone
    live, dead = Spares(tmp_path, "live"), Spares(tmp_path, "dead")
    for spares, name in ((live, "run_l-1"), (dead, "run_d-1")):
        workspace = Workspace(tmp_path, name).create({})
        workspace.discard_parameters()
        assert spares.give(workspace)
    # When a new process recovers the directory
    Spares(tmp_path, "new").recover(lambda owner: owner == "live")
    # Then only the live process keeps its spares
    assert live.dir.is_dir() and not dead.dir.exists()
