"""A real ``hatchway serve``, also as an unprivileged user (and on what looks like a kernel without Landlock)."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hatchway.config import Settings
from tests.helpers import REPO, LiveServer

#: the uid an unprivileged gateway runs as (outside HATCHWAY_SANDBOX_UIDS)
UNPRIVILEGED = 1_990_000_000
SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")


@pytest.fixture
def unprivileged_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Makes a LiveServer that runs as :data:`UNPRIVILEGED` (``hide_landlock``: with Landlock's system
    calls answering ENOSYS). It runs the system's Python of this X.Y with this venv's packages, since
    the venv's interpreter may live where only root can go (pyenv under /root)."""
    if os.geteuid() != 0:
        pytest.skip("starting a gateway as another user needs root")
    if not SYSTEM_PYTHON.is_file():
        pytest.skip(f"no {SYSTEM_PYTHON} for an unprivileged gateway to run")
    made: list[LiveServer] = []

    def make(hide_landlock: bool = False, **env: str) -> LiveServer:
        home = tmp_path / f"home-{len(made)}"
        home.mkdir(mode=0o700)
        os.chown(home, UNPRIVILEGED, UNPRIVILEGED)
        pythonpath = os.pathsep.join([str(REPO / "src"), sysconfig.get_paths()["purelib"]])
        server = LiveServer(home, PYTHONPATH=pythonpath, **env)
        wrapper = [str(SYSTEM_PYTHON), str(Path(__file__).with_name("demote.py")), str(UNPRIVILEGED)]
        server.command = [
            *wrapper,
            *(["--no-landlock"] if hide_landlock else []),
            "--",
            str(SYSTEM_PYTHON),
            "-m",
            "hatchway",
        ]
        made.append(server)
        return server

    yield make
    for server in made:
        server.kill()
        shutil.rmtree(work_dir_of(server.home, UNPRIVILEGED), ignore_errors=True)


def work_dir_of(home: Path, uid: int | None = None) -> Path:
    """Where the workspaces of a gateway on ``home`` (running as ``uid``) live."""
    path = Settings(home=home).work_dir
    return path if uid is None else path.with_name(path.name.replace(f"-{os.geteuid()}-", f"-{uid}-", 1))
