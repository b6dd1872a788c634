"""Fixtures shared by every tier."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hatchway.client import Client
from hatchway.config import Settings
from hatchway.services import Services
from hatchway.wiring import bootstrap, build_services
from tests.helpers import ADMIN_TOKEN, LiveServer

PY = sys.executable
OPEN_TMP = Path(tempfile.gettempdir()) / "hatchway-tests"
#: settings that keep timing tests short: a 3 s lease, 0.5 s heartbeats, a 1 s kill grace
FAST = {"HATCHWAY_LEASE_SECONDS": "3", "HATCHWAY_HEARTBEAT_SECONDS": "0.5", "HATCHWAY_KILL_GRACE_SECONDS": "1"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability",
        choices=("full", "bounded"),
        default="full",
        help="scale of tests/reliability: the issue's figures (full) or the bounded form CI runs",
    )


#: tests that share the one dockerd, or whose subject is timing (the bench), run on one xdist worker,
#: one after another (``--dist loadgroup`` in scripts/test); the rest spread over both
EXCLUSIVE_FILES = {"test_bench.py", "test_sam_local.py", "test_docker.py", "test_console_browser.py"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("docker") or item.path.name in EXCLUSIVE_FILES:
            item.add_marker(pytest.mark.xdist_group("exclusive"))


def make_settings(home: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "HATCHWAY_HOME": str(home),
        "HATCHWAY_BOOTSTRAP_TOKEN": ADMIN_TOKEN,
        "HATCHWAY_LEASE_SECONDS": "3",
        "HATCHWAY_HEARTBEAT_SECONDS": "0.5",
        # host processes unless a test asks for containers, whatever engine this machine has
        "HATCHWAY_EXECUTOR": "process",
    }
    return Settings.from_env(base, **{"kill_grace_seconds": 1.0, **overrides})


class OpenTempPaths:
    """Temporary folders other users can reach, under /tmp/hatchway-tests (searchable, not
    listable): a gateway running as root runs each action under a uid of its own, which must reach
    the scripts a test writes. pytest sets its own root (/tmp/pytest-of-root) back to 0700 whenever
    a session starts, so tests run as root take their folders from here; they go after the session."""

    #: read by pytest's ``tmp_path``: keep every folder until the session's end removes them all
    _retention_policy = "all"

    def __init__(self) -> None:
        OPEN_TMP.mkdir(mode=0o711, exist_ok=True)
        info = os.lstat(OPEN_TMP)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
            raise RuntimeError(f"{OPEN_TMP} is not a folder only root may change")
        self.base = Path(tempfile.mkdtemp(prefix=f"session-{os.getpid()}-", dir=OPEN_TMP))
        self.base.chmod(0o711)

    def mktemp(self, basename: str, numbered: bool = True) -> Path:
        made = Path(tempfile.mkdtemp(prefix=f"{basename[:40]}-", dir=self.base))
        made.chmod(0o755)
        return made

    def getbasetemp(self) -> Path:
        return self.base


@pytest.fixture(scope="session")
def tmp_path_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """pytest's own, or (as root) :class:`OpenTempPaths` - which pytest's ``tmp_path`` then uses too."""
    if os.geteuid() != 0:
        yield tmp_path_factory
        return
    paths = OpenTempPaths()
    yield paths
    shutil.rmtree(paths.base, ignore_errors=True)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "home")


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    """A process's services on a fresh home (bootstrapped), ready for a worker pool."""
    built = build_services(settings, pool=True)
    bootstrap(built)
    yield built
    built.close()


@pytest.fixture
def pool(services: Services) -> Iterator[Any]:
    from hatchway.worker import WorkerPool

    workers = WorkerPool(services, size=2)
    workers.start()
    yield workers
    workers.stop(grace_seconds=2)


def inprocess_client(services: Services, token: str = ADMIN_TOKEN, **kwargs: Any) -> Client:
    from hatchway.api import create_app
    from hatchway.testing import ResolverTransport

    resolver = create_app(services)
    return Client("http://hatchway.local", token, transport=ResolverTransport(resolver.resolve), **kwargs)


@pytest.fixture
def client(services: Services, pool: Any) -> Iterator[Client]:
    """The Python client over the resolver in-process, with a worker pool running."""
    with inprocess_client(services) as hw:
        yield hw


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A real `hatchway serve` process (examples loaded), stopped at the end."""
    server = LiveServer(tmp_path / "live", "--examples", **FAST)
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Any]:
    """moto over real HTTP for the whole session (each test makes its own table, key and bucket)."""
    from tests.awsmock import MotoServer

    server = MotoServer().start()
    yield server
    server.stop()


def aws_server_env(moto: Any, home: Path) -> dict[str, str]:
    """`hatchway serve --backend aws` against ``moto``: resources made as `hatchway aws bootstrap` does."""
    from hatchway.aws.clients import AwsClients
    from hatchway.wiring import aws_bootstrap as bootstrap
    from tests.awsmock import REGION, aws_settings, patched_env

    settings = aws_settings(home, moto.url)
    with patched_env(moto.env()):
        made = bootstrap(settings, AwsClients(REGION, moto.url))
    return {**moto.env(), **made.environment()}


@pytest.fixture(params=["inprocess", "server", "aws"])
def hw(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    """The same client calls in-process, against a real `hatchway serve`, and against a real
    `hatchway serve --backend aws` on a moto server (DynamoDB + KMS over HTTP)."""
    if request.param == "inprocess":
        built = request.getfixturevalue("services")
        request.getfixturevalue("pool")
        with inprocess_client(built) as c:
            yield c
    else:
        aws = (
            aws_server_env(request.getfixturevalue("moto_server"), tmp_path / "live") if request.param == "aws" else {}
        )
        server = LiveServer(tmp_path / "live", **{**FAST, **aws})
        server.start()
        try:
            with server.client() as c:
                yield c
        finally:
            server.kill()
