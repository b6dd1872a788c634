"""Issue 15, part 3: large reads neither stall the server nor grow without bound.

A real ``hatchway serve`` (default settings) whose store holds runs with long logs and large
results, seeded straight into its SQLite file: ``/health`` keeps answering while four clients read
500-run pages in a loop, list pages leave out each run's ``os``, and no answer grows past
``HATCHWAY_MAX_ANSWER_BYTES`` (6 MiB) - a list page ends early and its ``next`` reads on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hatchway.domain.runs import LogEntry, Run, RunStatus, new_run_id
from hatchway.store.sqlite import SqliteStore
from tests.helpers import ADMIN_TOKEN, LiveServer

P = "/v1/projects/proj_local"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MAX_ANSWER = 6 * 1024 * 1024


def seed_runs(home: Path, count: int, action: str, log_lines: int = 0, ret_bytes: int = 0) -> list[str]:
    """Finished runs written straight into the server's store; their ids, newest first."""
    store = SqliteStore(home / "hatchway.db")
    now = int(time.time() * 1000)
    ids = []
    try:
        for index in range(count):
            log = [
                LogEntry("stdout", now, f"line {line} of run {index} " + "x" * 400, seq=line + 1)
                for line in range(log_lines)
            ]
            run = Run(
                id=new_run_id(), project_id="proj_local", environment="development", action_name=action,
                action_version=1, action_digest="sha256:" + "0" * 64, status=RunStatus.SUCCESSFUL, attempt=1,
                os=log, ret={"blob": "r" * ret_bytes} if ret_bytes else None, created_at=now, finished_at=now,
            )  # fmt: skip
            store.runs.create_run(run)
            ids.append(run.id)
    finally:
        store.close()
    return ids[::-1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path_factory.mktemp("load") / "home").start()
    yield live
    live.kill()


def test_health_answers_while_four_clients_read_the_largest_run_pages(server: LiveServer) -> None:
    # Given 500 runs whose records carry 100 log lines each (about 20 MB of os, as in the issue)
    seed_runs(server.home, 500, "noisy", log_lines=100)
    stop = threading.Event()
    pages: list[tuple[int, int]] = []

    def read_pages() -> None:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
            while not stop.is_set():
                answer = http.get(f"{P}/runs", params={"limit": 500, "action": "noisy"})
                pages.append((answer.status_code, len(answer.content)))

    readers = [threading.Thread(target=read_pages) for _ in range(4)]
    for reader in readers:
        reader.start()
    slowest = 0.0
    try:
        # When four clients read 500-run pages in a loop (once they have started)
        deadline = time.monotonic() + 30
        while len(pages) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        with httpx.Client(base_url=server.url, timeout=10) as probe:
            for _ in range(30):
                began = time.monotonic()
                assert probe.get("/health").status_code == 200
                slowest = max(slowest, time.monotonic() - began)
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=60)
    # Then /health kept answering (a generous bound: it took 2.6 s at worst before), and every
    # page was served, small: without os
    assert slowest < 1.0, f"/health took {slowest:.2f} s"
    assert pages and all(code == 200 for code, _ in pages), pages[:5]
    assert max(size for _, size in pages) < 2 * 1024 * 1024


def test_a_listed_run_has_no_os_and_the_run_itself_has(server: LiveServer) -> None:
    newest = seed_runs(server.home, 2, "listed", log_lines=3)[0]
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http:
        listed = http.get(f"{P}/runs", params={"action": "listed"}).json()["items"]
        assert [run["id"] for run in listed][0] == newest
        assert all("os" not in run and run["status"] == "SUCCESSFUL" and "parameters" in run for run in listed)
        assert len(http.get(f"{P}/runs/{newest}").json()["os"]) == 3


def follow(http: httpx.Client, path: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], list[int]]:
    """Every item of a list, following next; and the size of each page."""
    items: list[dict[str, Any]] = []
    sizes: list[int] = []
    query = dict(params)
    while True:
        answer = http.get(path, params=query)
        assert answer.status_code == 200, answer.text[:300]
        sizes.append(len(answer.content))
        items += answer.json()["items"]
        if answer.json()["next"] is None:
            return items, sizes
        query = {**params, "cursor": answer.json()["next"]}


def test_a_page_over_the_answer_limit_ends_early_and_next_reads_on(server: LiveServer) -> None:
    # Given 60 runs with a 200 KB result each: 12 MB in a page of all of them
    ids = seed_runs(server.home, 60, "bulky", ret_bytes=200_000)
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
        # When a client asks for 500 per page and follows next
        items, sizes = follow(http, f"{P}/runs", {"limit": 500, "action": "bulky"})
    # Then no page passed the limit, and every run came exactly once, newest first
    assert len(sizes) >= 2 and max(sizes) <= MAX_ANSWER, sizes
    assert [run["id"] for run in items] == ids


def test_a_log_page_over_the_answer_limit_ends_early_and_next_reads_on(server: LiveServer) -> None:
    # Given a run whose log is 5,000 lines of 2 KB (10 MB: the largest page a client may ask for)
    run_id = seed_runs(server.home, 1, "chatty")[0]
    store = SqliteStore(server.home / "hatchway.db")
    try:
        store.runs.append_logs(run_id, [LogEntry("stdout", 1, f"{n} " + "y" * 2000) for n in range(5000)])
    finally:
        store.close()
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
        items, sizes = follow(http, f"{P}/runs/{run_id}/logs", {"limit": 5000})
    assert len(sizes) >= 2 and max(sizes) <= MAX_ANSWER, sizes
    assert [entry["seq"] for entry in items] == list(range(1, 5001))


def test_a_single_answer_over_the_limit_is_an_application_error_in_the_shape(server: LiveServer) -> None:
    # Given a run whose record alone is over 6 MiB (a 7 MB result)
    run_id = seed_runs(server.home, 1, "huge", ret_bytes=7_000_000)[0]
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
        answer = http.get(f"{P}/runs/{run_id}")
        listed = http.get(f"{P}/runs", params={"action": "huge"})
    # Then reading it is a 500 whose exceptionId finds the sizes in the server log; a page of it too
    for refused in (answer, listed):
        body = refused.json()
        assert refused.status_code == 500 and body["status"] == "error", body
        assert body["exceptionId"] in server.log() and "HATCHWAY_MAX_ANSWER_BYTES" in server.log()
