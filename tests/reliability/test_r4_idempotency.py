"""R4: one Idempotency-Key under concurrency, misuse, and the death of its first request."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import LiveServer, wait_until
from tests.reliability.conftest import Figures
from tests.reliability.harness import API, AUTH, FAST, chaos_spec, read_runs, restart_server

pytestmark = pytest.mark.integration

IN_PROGRESS = 2.0


def test_r4_fifty_concurrent_submits_with_one_key_make_one_run(tmp_path: Path, figures: Figures) -> None:
    server = LiveServer(tmp_path / "home", "--workers", "0", **FAST).start()
    try:
        with server.client() as hw:
            hw.register_action(chaos_spec())
        body = {"parameters": {"behaviour": "work", "seconds": "0"}}
        answers: list[httpx.Response] = []
        start = threading.Barrier(50)

        def submit() -> None:
            with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
                start.wait()
                answers.append(http.post(f"{API}/actions/chaos/runs", json=body, headers={"Idempotency-Key": "k-50"}))

        # When 50 clients send the same key and body at the same moment
        threads = [threading.Thread(target=submit) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        # and then the key comes back with another body
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
            other = http.post(f"{API}/actions/chaos/runs", json={"parameters": {"behaviour": "long"}},
                              headers={"Idempotency-Key": "k-50"})  # fmt: skip
    finally:
        server.kill()
    # Then there is one run, every answer is the same 202, and the other body is refused
    runs = read_runs(tmp_path / "home")
    codes = sorted({a.status_code for a in answers})
    bodies = {a.content for a in answers}
    figures.add("R4", "runs from 50 concurrent submits, one key", len(runs), "1", len(runs) == 1)
    same = f"{sum(a.status_code == 202 for a in answers)}/50 ({len(bodies)} distinct)"
    figures.add("R4", "identical 202 answers", same, "50/50 (1 distinct)", codes == [202] and len(bodies) == 1)
    figures.add("R4", "same key, other body", other.status_code, "409", other.status_code == 409)
    assert len(answers) == 50 and codes == [202] and len(bodies) == 1
    assert len(runs) == 1 and next(iter(runs)) == answers[0].json()["id"]
    assert other.status_code == 409 and other.json()["error"] == "Conflict"


def test_r4_a_key_whose_first_request_died_is_usable_after_its_expiry(tmp_path: Path, figures: Figures) -> None:
    # Given a server that dies right after taking a key, before creating the run
    home = tmp_path / "home"
    env = {**FAST, "HATCHWAY_IDEMPOTENCY_IN_PROGRESS_SECONDS": str(IN_PROGRESS)}
    server = LiveServer(home, "--workers", "0", **env).start()
    with server.client() as hw:
        hw.register_action(chaos_spec())
    server.kill()
    server = restart_server(server, HATCHWAY_TEST_CRASH_AT="after_idempotency_begin:1")
    body = {"parameters": {"behaviour": "work"}}
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http, pytest.raises(httpx.TransportError):
        http.post(f"{API}/actions/chaos/runs", json=body, headers={"Idempotency-Key": "k-dead"})
    died = time.monotonic()
    wait_until(lambda: server.proc is not None and server.proc.poll() is not None, 10, what="the server to die")
    # When it is started again and the client retries with the same key
    server = restart_server(server, HATCHWAY_TEST_CRASH_AT="")
    try:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
            retry = http.post(f"{API}/actions/chaos/runs", json=body, headers={"Idempotency-Key": "k-dead"})
            usable_after = time.monotonic() - died
            again = http.post(f"{API}/actions/chaos/runs", json=body, headers={"Idempotency-Key": "k-dead"})
    finally:
        server.kill()
    # Then the key was taken over once its in-progress time ran out, and one run exists
    runs = read_runs(home)
    figures.add("R4", "key whose first request died: usable after", f"{usable_after:.1f} s",
                f">= in-progress expiry ({IN_PROGRESS:g} s)", retry.status_code == 202)  # fmt: skip
    figures.add("R4", "runs for that key", len(runs), "1", len(runs) == 1)
    assert retry.status_code == 202, retry.text
    assert again.status_code == 202 and again.json() == retry.json()
    assert list(runs) == [retry.json()["id"]]
    assert usable_after >= IN_PROGRESS - 0.1
