"""``hatchway serve --processes N``: several real gateway processes on one port and one home.

Which process answered is read from the log: a process of a group names itself in each line
(``serve_process``), and a submit's access line names the run it made.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hatchway.domain.runs import RunStatus
from tests.helpers import LiveServer, child_env, processes_with, wait_until
from tests.reliability.harness import API, AUTH, FAST, read_runs, sh_spec

pytestmark = pytest.mark.integration

MEMBER = "serve_member()"


def log_lines(server: LiveServer) -> Iterator[dict[str, Any]]:
    for line in server.log().splitlines():
        if line.startswith("{"):
            yield json.loads(line)


def members(server: LiveServer) -> list[int]:
    """The pids of the group's serve processes (children of the server's parent process)."""
    assert server.proc is not None
    return [pid for pid in processes_with(MEMBER) if _parent_of(pid) == server.proc.pid]


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def submit(server: LiveServer, name: str, **parameters: str) -> str:
    """One run submitted on a fresh connection (a new one may land on either process)."""
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http:
        answer = http.post(f"{API}/actions/{name}/runs", json={"parameters": parameters})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def accepted_by(server: LiveServer) -> dict[str, int]:
    """Run id -> the process whose access line shows the submit that made it."""
    return {
        line["run_id"]: line["serve_process"]
        for line in log_lines(server)
        if line.get("logger") == "hatchway.access" and line.get("status") == 202 and line.get("run_id")
    }


def finished_by(server: LiveServer) -> dict[str, int]:
    """Run id -> the process that recorded its end."""
    return {
        line["run_id"]: line["serve_process"]
        for line in log_lines(server)
        if line.get("message") == "run status changed" and line.get("to_status") == "SUCCESSFUL"
    }


def runs_accepted_by_both(server: LiveServer) -> list[str]:
    """Runs of ``hello`` submitted on fresh connections until each process accepted one, all finished."""
    submitted: list[str] = []

    def both_accepted() -> bool:
        submitted.append(submit(server, "hello"))
        return set(accepted_by(server).values()) == {0, 1}

    wait_until(both_accepted, 60, 0.0, "submits answered by both processes")
    wait_until(lambda: set(submitted) <= set(finished_by(server)), 60, 0.05, "every run to finish")
    return submitted


@pytest.fixture
def group(tmp_path: Path) -> Iterator[LiveServer]:
    # one worker for two processes: process 0 has it, process 1 serves the API only, so every run
    # that process 1 accepts must cross to process 0 to be run
    server = LiveServer(
        tmp_path / "home", "--processes", "2", HATCHWAY_WORKERS="1", HATCHWAY_SANDBOX="none",
        HATCHWAY_SHUTDOWN_GRACE_SECONDS="1", **FAST,
    ).start()  # fmt: skip
    try:
        # every process is up once the parent prints its one banner (/health may come from the first
        # one ready; a process killed before it is ready ends the group, as a start that fails does)
        wait_until(lambda: "hatchway serving on" in server.log(), 30, 0.05, "the group's banner")
        yield server
    finally:
        server.stop()
        server.kill()


def test_both_processes_answer_on_one_port_and_runs_cross_between_them(group: LiveServer) -> None:
    with group.client() as hw:
        hw.register_action(sh_spec("hello", "echo hello"))
    assert len(members(group)) == 2
    # one banner for the group, printed by the parent once every process is ready (the fixture waits for it)
    assert group.log().count("hatchway serving on") == 1

    submitted = runs_accepted_by_both(group)
    accepted, finished = accepted_by(group), finished_by(group)
    crossed = [run for run in submitted if accepted[run] == 1]
    assert crossed, accepted
    assert all(finished[run] == 0 for run in submitted), finished  # the one worker ran them all
    assert httpx.get(f"{group.url}/health").status_code == 200


def test_sigterm_stops_every_process_and_releases_runs_in_flight(group: LiveServer) -> None:
    with group.client() as hw:
        hw.register_action(sh_spec("nap", "sleep 600"))
    run = submit(group, "nap")
    with group.client() as hw:
        wait_until(lambda: hw.get_run(run)["status"] == "INPROGRESS", 30, 0.05, "the run to start")
    pids = members(group)
    assert group.proc is not None
    group.proc.send_signal(signal.SIGTERM)
    code = group.proc.wait(timeout=60)
    assert code == -signal.SIGTERM  # like one process: killed by the signal, after its shutdown
    assert not [pid for pid in pids if _alive(pid)]
    assert not processes_with("sleep 600")
    lines = list(log_lines(group))
    assert any(line.get("message") == "releasing run at shutdown" and line.get("run_id") == run for line in lines)
    assert read_runs(group.home)[run].status == RunStatus.ENQUEUED  # back in the queue, for the next gateway


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_process_is_replaced(group: LiveServer) -> None:
    first = members(group)
    assert len(first) == 2
    os.kill(first[0], signal.SIGKILL)
    wait_until(lambda: len(set(members(group)) - set(first)) == 1, 60, 0.05, "a new serve process")
    wait_until(
        lambda: any(line.get("message") == "a serve process was started again" for line in log_lines(group)),
        60, 0.05, "the new process to be ready",
    )  # fmt: skip
    assert any(line.get("message") == "a serve process ended unexpectedly; starting another"
               for line in log_lines(group))  # fmt: skip
    with group.client() as hw:
        hw.register_action(sh_spec("hello", "echo hello"))
    runs = [submit(group, "hello") for _ in range(6)]
    wait_until(lambda: set(runs) <= set(finished_by(group)), 60, 0.05, "runs after the replacement")


def test_the_sync_call_limit_holds_across_processes(tmp_path: Path) -> None:
    release = tmp_path / "release"
    server = LiveServer(
        tmp_path / "home", "--processes", "2", HATCHWAY_WORKERS="0", HATCHWAY_SANDBOX="none",
        HATCHWAY_SYNC_CONCURRENCY="2",
    ).start()  # fmt: skip
    callers = 16  # on fresh connections: the kernel spreads them over both processes
    answers: list[int] = []
    try:
        with server.client() as hw:
            hw.register_action(sh_spec("gate", f"while [ ! -e {release} ]; do sleep 0.02; done; echo '{{}}'"))

        def call() -> None:
            with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
                answers.append(http.post(f"{API}/actions/gate/sync/call", json={}).status_code)

        threads = [threading.Thread(target=call) for _ in range(callers)]
        for thread in threads:
            thread.start()
        # two calls hold the gateway's two slots; every other one is refused, whichever process took it
        wait_until(lambda: len(answers) == callers - 2, 60, 0.05, "the calls over the limit to be refused")
        assert set(answers) == {429}
        release.touch()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(answers) == [200, 200] + [429] * (callers - 2)
        calls = [line for line in log_lines(server)
                 if line.get("logger") == "hatchway.access" and "sync" in str(line.get("route"))]  # fmt: skip
        assert {line["serve_process"] for line in calls} == {0, 1}, calls
    finally:
        server.stop()
        server.kill()


def test_a_group_whose_processes_cannot_start_exits_1_with_one_line_each(tmp_path: Path) -> None:
    # a "certificate" the parent passes on unread and every serve process fails to load
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    server = LiveServer(tmp_path / "home", "--processes", "2", "--tls-cert", str(bogus), "--tls-key", str(bogus))
    done = subprocess.run(
        [*server.command, "serve", "--port", str(server.port), *server.args],
        env=child_env(server.home), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "hatchway serving on" not in done.stdout
    lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert lines[-1] == "error: a serve process could not start (its log lines are above)"
    assert all(line.startswith("error: ") for line in lines), lines  # no traceback
    assert not processes_with(f"--port {server.port}")


# ---- GET /metrics: the whole group's numbers, whichever process answers


def scrape(server: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One ``GET /metrics`` on a fresh connection (it may land on any process), parsed."""
    from prometheus_client.parser import text_string_to_metric_families

    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
        answer = http.get("/metrics")
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def counted(page: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    """The sum of a counter's series (every project, action, mode and status)."""
    return sum(value for (sample, _), value in page.items() if sample == name)


def runs_counted(page: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> tuple[float, float]:
    return counted(page, "hatchway_runs_started_total"), counted(page, "hatchway_runs_finished_total")


def scrapers(server: LiveServer) -> set[int]:
    """The processes that have answered ``GET /metrics``."""
    return {
        line["serve_process"]
        for line in log_lines(server)
        if line.get("logger") == "hatchway.access" and line.get("route") == "/metrics"
    }


def every_process_shows(server: LiveServer, expected: tuple[float, float]) -> None:
    """Scrape until both processes have answered; each answer shows ``expected`` runs."""

    def both_answered() -> bool:
        page = scrape(server)
        assert runs_counted(page) == expected
        assert page[("hatchway_workers", ())] == 1  # the group's one worker, counted once
        return scrapers(server) == {0, 1}

    wait_until(both_answered, 60, 0.0, "/metrics answered by both processes")


def test_metrics_of_a_group_count_the_runs_of_every_process(group: LiveServer) -> None:
    # Given runs accepted by both processes (and all run by process 0, the one with the worker)
    with group.client() as hw:
        hw.register_action(sh_spec("hello", "echo hello"))
    submitted = runs_accepted_by_both(group)
    # Then one scrape soon counts them all, and from then on every scrape does, whoever answers it
    every = (float(len(submitted)), float(len(submitted)))
    wait_until(lambda: runs_counted(scrape(group)) == every, 30, 0.05, "/metrics to count every run")
    every_process_shows(group, every)
    # the processes share their numbers in private files, in a directory of the group's own
    (directory,) = (group.home / "metrics").iterdir()
    assert directory.name == f"group-{group.proc.pid if group.proc else 0}"
    assert stat.S_IMODE((group.home / "metrics").stat().st_mode) == 0o700
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert sorted(path.name for path in directory.iterdir()) == ["0.json", "1.json"]
    assert {stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir()} == {0o600}
    # which go with the group
    assert group.stop() == -signal.SIGTERM
    assert not directory.exists()


def test_metrics_do_not_go_back_when_a_process_is_replaced(group: LiveServer) -> None:
    with group.client() as hw:
        hw.register_action(sh_spec("hello", "echo hello"))
    runs = [submit(group, "hello") for _ in range(6)]
    wait_until(lambda: set(runs) <= set(finished_by(group)), 60, 0.05, "every run to finish")
    wait_until(lambda: runs_counted(scrape(group)) == (6, 6), 30, 0.05, "/metrics to count every run")
    for victim in sorted(members(group)):  # each in turn: the one that ran the runs, and the other
        _kill_and_replace(group, victim, (6, 6))
        every_process_shows(group, (6, 6))
    more = [submit(group, "hello") for _ in range(4)]
    wait_until(lambda: set(more) <= set(finished_by(group)), 60, 0.05, "the new runs to finish")
    wait_until(lambda: runs_counted(scrape(group)) == (10, 10), 30, 0.05, "/metrics to count the new runs")


def _kill_and_replace(server: LiveServer, victim: int, counted: tuple[float, float]) -> None:
    """SIGKILL one serve process; every scrape until its replacement is ready shows ``counted``."""
    before, restarts = set(members(server)), _restarts(server)
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        assert runs_counted(scrape(server)) == counted  # while it is gone, and once it is back
        return _restarts(server) > restarts and len(set(members(server)) - before) == 1

    wait_until(replaced, 60, 0.05, "the killed process to be replaced")


def _restarts(server: LiveServer) -> int:
    return sum(1 for line in log_lines(server) if line.get("message") == "a serve process was started again")


def test_metrics_of_a_single_process_gateway_are_its_own(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "home", HATCHWAY_WORKERS="1", HATCHWAY_SANDBOX="none", **FAST).start()
    try:
        with server.client() as hw:
            hw.register_action(sh_spec("hello", "echo hello"))
        run = submit(server, "hello")
        wait_until(lambda: run in finished_by_anyone(server), 60, 0.05, "the run to finish")
        page = scrape(server)
        assert runs_counted(page) == (1, 1)
        assert page[("hatchway_workers", ())] == 1
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
            assert "# HELP hatchway_workers Worker threads of this process." in http.get("/metrics").text
        assert not (server.home / "metrics").exists()  # nothing shared, nothing written
    finally:
        server.stop()
        server.kill()


def finished_by_anyone(server: LiveServer) -> set[str]:
    return {
        line["run_id"]
        for line in log_lines(server)
        if line.get("message") == "run status changed" and line.get("to_status") == "SUCCESSFUL"
    }
