"""The Python client against a real ``hatchway serve``: typed answers, the exception tree, failed
runs raised on request, page iterators, and the AsyncClient doing the same."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from hatchway.client import (
    Action,
    AsyncClient,
    Client,
    ConnectionFailed,
    HatchwayError,
    NotFound,
    Run,
    RunFailed,
    RunSummary,
    Unauthorized,
    UserError,
    ValidationFailed,
    WaitTimeout,
)
from tests.conftest import FAST
from tests.helpers import ADMIN_TOKEN, LiveServer, free_port

pytestmark = pytest.mark.integration
FAILS = {"name": "fails", "container_parameters": {"entry_point": ["sh", "-c", "echo 'no [good]' >&2; exit 1"]}}
SLOW = {"name": "slow", "container_parameters": {"entry_point": ["sleep", "30"]}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("client"), "--examples", **FAST).start()
    with live.client() as hw:
        hw.register_action(FAILS)
        hw.register_action(SLOW)
    yield live
    live.kill()


def test_answers_are_typed_models(server: LiveServer) -> None:
    with Client(server.url, ADMIN_TOKEN) as hw:
        action = hw.get_action("check-magnetometer-norm")
        assert isinstance(action, Action) and action.version == 1 and action.digest.startswith("sha256:")
        run = hw.start_run("check-magnetometer-norm", {"max_norm": 50})
        assert isinstance(run, Run) and run.status == "ENQUEUED" and run.action.name == "check-magnetometer-norm"
        done = hw.wait(run.id, timeout=60, raise_on_failure=True)
        assert done.is_finished and done.ret["flagged"] == ["flight-001", "flight-002", "flight-003"]
        assert done.parameters["max_norm"] == "50" and done["status"] == done.status == "SUCCESSFUL"
        page = hw.list_runs(limit=1)
        assert isinstance(page.items[0], RunSummary) and page.items[0].id == run.id


def test_errors_are_named_by_meaning(server: LiveServer) -> None:
    with Client(server.url, ADMIN_TOKEN) as hw:
        with pytest.raises(NotFound) as missing:
            hw.get_run("run_00000000000000000000000000")
        assert missing.value.status_code == 404 and isinstance(missing.value, HatchwayError)
        with pytest.raises(UserError):
            hw.call_sync("db-extractor", "test-connection", {"database": "/nope.db"})
        with pytest.raises(ValidationFailed) as invalid:
            hw.register_action({"name": "x", "unknown_field": 1})
        assert invalid.value.details and "unknown_field" in str(invalid.value.details)
    with Client(server.url, "hwadmin_wrong") as stranger, pytest.raises(Unauthorized):
        stranger.list_runs()
    with Client(f"http://127.0.0.1:{free_port()}", "t", retries=0) as nobody, pytest.raises(ConnectionFailed):
        nobody.health()


def test_wait_raises_a_failed_run_when_asked(server: LiveServer) -> None:
    with Client(server.url, ADMIN_TOKEN) as hw:
        run = hw.start_run("fails")
        assert hw.wait(run.id, timeout=60).status == "FAILED"  # returned as before, unless asked
        with pytest.raises(RunFailed) as failed:
            hw.wait(run.id, timeout=60, raise_on_failure=True)
        assert failed.value.run.error is not None and failed.value.run.error.message == "no [good]"
        assert failed.value.run_id == run.id and str(failed.value) == f"run {run.id} ended FAILED: no [good]"
        slow = hw.start_run("slow")
        with pytest.raises(WaitTimeout) as waited:
            hw.wait(slow.id, timeout=0.2)
        assert isinstance(waited.value, TimeoutError) and waited.value.run_id == slow.id
        hw.cancel_run(slow.id)


def test_page_iterators_walk_every_page(server: LiveServer) -> None:
    with Client(server.url, ADMIN_TOKEN) as hw:
        started = {hw.start_run("fails").id for _ in range(3)}
        walked = [run.id for run in hw.iter_runs(action="fails", page_size=1)]
        assert started <= set(walked) and len(walked) == len(set(walked))
        assert {action.name for action in hw.iter_actions()} >= {"fails", "slow", "db-extractor"}


def test_the_async_client_has_the_same_surface(server: LiveServer) -> None:
    async def main() -> tuple[str, list[str], list[str]]:
        async with AsyncClient(server.url, ADMIN_TOKEN) as hw:
            run = await hw.start_run("check-magnetometer-norm")
            lines = [entry.msg async for entry in hw.follow_logs(run.id)]
            done = await hw.wait(run.id, timeout=60, raise_on_failure=True)
            ids = [summary.id async for summary in hw.iter_runs(action="check-magnetometer-norm", page_size=2)]
            with pytest.raises(NotFound):
                await hw.get_action("no-such-action")
            return done.status, lines, ids

    status, lines, ids = asyncio.run(main())
    assert status == "SUCCESSFUL" and lines and ids
    with Client(server.url, ADMIN_TOKEN) as hw:
        newest = ids[0]
        assert [entry.msg for entry in hw.iter_logs(newest)] == lines
