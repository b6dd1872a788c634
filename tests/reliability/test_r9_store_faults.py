"""R9: the store fails under a submit (disk full, database locked, endpoint gone) and under a run.

The gateway's home is a small tmpfs of its own, so the faults are real: the disk is filled, the
database locked by another process. Each time a submit must
get 503 with ``Retry-After`` and the API's error shape, the store must hold exactly the runs that
were answered 202 (nothing half-written: no run, no idempotency key left behind by a 503), the
API must keep answering ``/health``, and once the fault clears the same request must succeed and
its run complete. The same holds for a DynamoDB endpoint that goes away (a moto server stopped
and started again), once the DynamoDB store exists.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from hatchway.config import Settings
from hatchway.errors import Unavailable
from hatchway.runtime.spawn import spawn
from hatchway.wiring import bootstrap, build_services
from tests.conftest import inprocess_client, make_settings
from tests.helpers import LiveServer, processes_with, wait_until
from tests.reliability.conftest import Figures
from tests.reliability.harness import API, AUTH, CHAOS, chaos_spec, health_probe, percentile, read_runs

pytestmark = pytest.mark.integration

BUSY = 2.0


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs for the gateway's home (needs root and mount)."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", "size=24m", "tmpfs", str(where)):
        pytest.skip("needs root and permission to mount a tmpfs (a real full disk)")
    try:
        yield where
    finally:
        _mount("-o", "remount,rw", str(where))
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


class Client:
    """Submits over HTTP and keeps what was answered."""

    def __init__(self, url: str, ledger: Path) -> None:
        self.http = httpx.Client(base_url=url, headers=AUTH, timeout=60)
        self.body = {"parameters": {"behaviour": "work", "ledger": str(ledger)}}
        self.accepted: list[str] = []

    def submit(self, key: str | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else {}
        answer = self.http.post(f"{API}/actions/chaos/runs", json=self.body, headers=headers)
        if answer.status_code == 202:
            self.accepted.append(answer.json()["id"])
        return answer


def _is_503(answer: httpx.Response) -> bool:
    body = answer.json()
    return answer.status_code == 503 and "Retry-After" in answer.headers and body["error"] == "Service unavailable"


def _health_during(url: str, fault: Callable[[], None]) -> list[float]:
    """/health latencies (s) probed every 50 ms while ``fault`` runs."""
    with health_probe(url, 0.05) as health:
        fault()
    return list(health.values)


def _idempotency_keys(home: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{home / 'hatchway.db'}?mode=ro", uri=True, timeout=30)
    try:
        return {row[0].rsplit("/", 1)[-1] for row in conn.execute("SELECT scope FROM idempotency")}
    finally:
        conn.close()


def test_r9_store_faults_at_submit_answer_503_and_recover(small_disk: Path, tmp_path: Path, figures: Figures) -> None:
    home = small_disk / "home"
    server = LiveServer(home, "--workers", "1", HATCHWAY_SANDBOX="none",
                        HATCHWAY_DB_BUSY_TIMEOUT_SECONDS=str(BUSY), HATCHWAY_LEASE_SECONDS="3",
                        HATCHWAY_HEARTBEAT_SECONDS="0.5")  # fmt: skip
    server.log_path = tmp_path / "server.log"  # the log must not need the full disk
    server.start()
    client = Client(server.url, tmp_path / "ledger")
    try:
        with server.client() as hw:
            hw.register_action(chaos_spec())
            hw.wait(client.submit().json()["id"])

        # --- disk full ------------------------------------------------------------------------
        filler = small_disk / "filler"
        with filler.open("wb") as handle, contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * (1 << 20))
                handle.flush()
        with contextlib.suppress(OSError), filler.open("ab") as handle:
            while True:  # the last pages too
                handle.write(b"\0" * 4096)
                handle.flush()
        answers: list[httpx.Response] = []

        def fill_up() -> None:
            # the WAL may hold a few more commits in pages it already has; then writes must fail
            for _ in range(500):
                answers.append(client.submit())
                if answers[-1].status_code != 202:
                    break
            answers.extend(client.submit(key) for key in ("full-1", "full-2"))

        health = _health_during(server.url, fill_up)
        failed = [a for a in answers if a.status_code != 202]
        absorbed = len(answers) - len(failed)
        runs = read_runs(home)
        half_written = (set(runs) ^ set(client.accepted)) | ({"full-1", "full-2"} & _idempotency_keys(home))
        filler.unlink()
        cleared = time.monotonic()
        retry = client.submit("full-1")
        recovered = time.monotonic() - cleared
        figures.add("R9", "disk full: answers after the fault",
                    f"{absorbed} x 202 (pages the WAL had), then {len(failed)} x "
                    f"{sorted({a.status_code for a in failed})}", "503 + Retry-After",
                    bool(failed) and all(_is_503(a) for a in failed))  # fmt: skip
        figures.add("R9", "disk full: half-written runs or keys", len(half_written), "0", not half_written)
        figures.add("R9", "disk full: /health during the fault, max", f"{max(health) * 1000:.0f} ms")
        figures.add("R9", "disk full: same key after the space is back", f"{retry.status_code} in {recovered:.2f} s",
                    "202", retry.status_code == 202)  # fmt: skip
        assert failed and all(_is_503(a) for a in failed), [a.text for a in failed][:3]
        assert not half_written
        assert retry.status_code == 202, retry.text

        # --- database locked by another process -------------------------------------------------
        locker = sqlite3.connect(home / "hatchway.db", timeout=30, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        keys = [None, None, None, None, "locked-0", "locked-1", "locked-2", "locked-3"]
        locked: list[tuple[httpx.Response, float]] = []

        def submit_at_once() -> None:
            def one(key: str | None) -> None:
                began = time.monotonic()
                answer = client.submit(key)
                locked.append((answer, time.monotonic() - began))

            threads = [threading.Thread(target=one, args=(key,)) for key in keys]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)

        try:
            health = _health_during(server.url, submit_at_once)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        slowest = max(elapsed for _, elapsed in locked)
        lock_keys = {k for k in keys if k} & _idempotency_keys(home)
        retry = client.submit("locked-1")
        codes = sorted({a.status_code for a, _ in locked})
        figures.add("R9", f"database locked (busy timeout {BUSY:g} s): 8 concurrent submits",
                    f"{len(locked)} x {codes}, slowest {slowest:.1f} s", f"503 + Retry-After within 2 x {BUSY:g} s",
                    all(_is_503(a) for a, _ in locked) and slowest <= 2 * BUSY + 1)  # fmt: skip
        figures.add("R9", "database locked: /health during the lock, p50 / max",
                    f"{percentile(health, 50) * 1000:.0f} / {max(health) * 1000:.0f} ms",
                    f"not held up by the lock (max < {BUSY / 4:g} s)", max(health) < BUSY / 4)  # fmt: skip
        figures.add("R9", "database locked: keys left / retry after unlock", f"{len(lock_keys)} / {retry.status_code}",
                    "0 / 202", not lock_keys and retry.status_code == 202)  # fmt: skip
        assert len(locked) == len(keys) and all(_is_503(a) for a, _ in locked), [a.text for a, _ in locked]
        assert slowest <= 2 * BUSY + 1, "writers queued behind each other for longer than the busy timeout"
        assert max(health) < BUSY / 4, "a write waiting for the lock held up the event loop"
        assert not lock_keys and retry.status_code == 202

        # Then every run that was accepted ends, and none that was refused exists
        def all_ended() -> bool:
            runs = read_runs(home)
            return all(runs[i].is_terminal for i in client.accepted)

        wait_until(all_ended, 120, 0.2, "every accepted run to end")
        runs = read_runs(home)
    finally:
        client.http.close()
        server.kill()
    statuses = {runs[i].status.value for i in client.accepted}
    figures.add("R9", "accepted runs after the faults: stored / ended", f"{len(runs)} / {statuses}",
                f"{len(client.accepted)} / SUCCESSFUL", set(runs) == set(client.accepted))  # fmt: skip
    assert set(runs) == set(client.accepted)
    assert statuses == {"SUCCESSFUL"}, [(runs[i].status_reason, runs[i].error) for i in client.accepted]


def test_r9_a_full_disk_under_a_running_action_loses_no_line_and_no_attempt(
    small_disk: Path, tmp_path: Path, figures: Figures
) -> None:
    home = small_disk / "home"
    server = LiveServer(home, "--workers", "1", HATCHWAY_SANDBOX="none", HATCHWAY_DB_BUSY_TIMEOUT_SECONDS=str(BUSY),
                        HATCHWAY_LEASE_SECONDS="3", HATCHWAY_HEARTBEAT_SECONDS="0.5")  # fmt: skip
    server.log_path = tmp_path / "server.log"
    server.start()
    rate, seconds = 2000, 4
    try:
        with server.client() as hw:
            hw.register_action(chaos_spec())
            # Given an action writing 2,000 log lines a second
            run = hw.start_run("chaos", {"behaviour": "rate", "rate": str(rate), "seconds": str(seconds)})
            wait_until(lambda: hw.logs(run["id"])["items"], 20, what="the first log lines")
            # When the disk fills up under it for a second
            filler = small_disk / "filler"
            with filler.open("wb") as handle, contextlib.suppress(OSError):
                while True:
                    handle.write(b"\0" * (1 << 20))
                    handle.flush()
            time.sleep(1)  # the fault's duration, not a synchronisation
            filler.unlink()
            # Then the attempt goes on, and every line reaches the store once the space is back
            final = hw.wait(run["id"], timeout=60)
            lines: list[str] = []
            after = 0
            while True:
                page = hw.logs(run["id"], after=after, limit=1000)
                lines += [e["msg"] for e in page["items"] if e["k"] == "stdout"]
                if not page["next"]:
                    break
                after = int(page["next"])
        leftover = processes_with(str(CHAOS))
    finally:
        server.kill()
    total = rate * seconds
    complete = lines == [f"line {i} of {total}" for i in range(total)]
    figures.add("R9", "disk full for 1 s under a running action: run / lines stored / processes left",
                f"{final['status']} attempt {final['attempt']} / {len(lines)}/{total} / {len(leftover)}",
                f"SUCCESSFUL attempt 1 / {total}/{total} / 0",
                final["status"] == "SUCCESSFUL" and final["attempt"] == 1 and complete and not leftover)  # fmt: skip
    assert final["status"] == "SUCCESSFUL" and final["attempt"] == 1, final
    assert complete, (len(lines), lines[-1:])
    assert not leftover


def test_r9_an_output_callback_that_fails_never_orphans_the_action(figures: Figures) -> None:
    # Given an action with a child of its own, and an output callback that fails (the store is down)
    marker = f"303.{secrets.randbelow(10**6):06d}"

    def refuse(stream: str, chunk: bytes) -> None:
        raise Unavailable("the store is unavailable (disk is full)")

    # When the process loop meets the failure
    with pytest.raises(Unavailable):
        spawn(["sh", "-c", f"sleep {marker} & echo started; wait"], cwd=None, env={"PATH": os.environ["PATH"]},
              seconds=30, on_output=refuse)  # fmt: skip
    # Then the whole process group is gone when the error reaches the caller
    left = processes_with(marker)
    figures.add("R9", "output callback failing mid-run: processes left", len(left), "0", not left)
    assert not left


def test_r9_an_unreachable_dynamodb_at_submit_answers_503_and_recovers(tmp_path: Path, figures: Figures) -> None:
    if importlib.util.find_spec("hatchway.store.dynamodb") is None:
        pytest.skip("hatchway.store.dynamodb does not exist yet (the aws branch brings it)")
    from hatchway.wiring import build_repos
    from tests.awsmock import FAKE_CREDENTIALS, MotoServer, patched_env  # type: ignore[import-not-found,unused-ignore]

    # Given a gateway whose store is DynamoDB behind a real HTTP endpoint (a moto server)
    moto = MotoServer().start()
    env = {**moto.env(), "HATCHWAY_BACKEND": "aws", "HATCHWAY_TABLE_NAME": "r9-table"}
    with patched_env(FAKE_CREDENTIALS):
        store = build_repos(Settings.from_env(env))
        store.create_table()  # type: ignore[attr-defined]
        services = build_services(make_settings(tmp_path / "home", sandbox="none"), repos=store, pool=True)
        bootstrap(services)
        try:
            with inprocess_client(services) as hw:
                hw.register_action(chaos_spec())
                before = hw.start_run("chaos", {"behaviour": "work"})["id"]
                # When the endpoint goes away
                moto.stop()
                began = time.monotonic()
                answer = hw._http.post(f"{API}/actions/chaos/runs", json={"parameters": {"behaviour": "work"}},
                                       headers={"Idempotency-Key": "gone-1"})  # fmt: skip
                waited = time.monotonic() - began
                # and comes back (same port, same data)
                port = moto.port
                moto = MotoServer()
                moto.port, moto.url = port, f"http://127.0.0.1:{port}"
                moto.start()
                retry = hw._http.post(f"{API}/actions/chaos/runs", json={"parameters": {"behaviour": "work"}},
                                      headers={"Idempotency-Key": "gone-1"})  # fmt: skip
                listed = {r["id"] for r in hw.list_runs()["items"]}
        finally:
            services.placement.close()
            moto.stop()
    # Then the client got 503 with Retry-After while it was gone, and the same request works after
    shaped = _is_503(answer)
    figures.add("R9", "DynamoDB unreachable at submit: answer", f"{answer.status_code} after {waited:.1f} s",
                "503 + Retry-After", shaped)  # fmt: skip
    figures.add("R9", "DynamoDB back: same key / runs stored", f"{retry.status_code} / {len(listed)}", "202 / 2",
                retry.status_code == 202 and listed == {before, retry.json()["id"]})  # fmt: skip
    assert shaped, answer.text
    assert retry.status_code == 202 and listed == {before, retry.json()["id"]}
