"""Plumbing of the reliability suite: the chaos action, gateway processes, and what to observe.

Observations come from outside the gateway wherever possible: its database read directly
(read-only), ``/proc`` for processes, zombies and memory, and the chaos action's own ledger of
executions.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from hatchway.domain.runs import Run, run_from_dict
from hatchway.executors.journal import read_journal
from tests.helpers import ADMIN_TOKEN, LiveServer, child_env, wait_until

CHAOS = Path(__file__).with_name("chaos.py")
CHAOS_PARAMETERS = ["behaviour", "seconds", "ledger", "bytes", "width", "rate", "linger"]
#: a 3 s lease, 0.5 s heartbeats (the sweep runs every 1.5 s), a 1 s kill grace
FAST = {"HATCHWAY_LEASE_SECONDS": "3", "HATCHWAY_HEARTBEAT_SECONDS": "0.5", "HATCHWAY_KILL_GRACE_SECONDS": "1"}
API = "/v1/projects/proj_local"
#: what a process armed with HATCHWAY_TEST_CRASH_AT logs just before it kills itself
CRASHED = "crash point reached"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def chaos_spec(name: str = "chaos", **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "parameters": [{"name": p, "required": False} for p in CHAOS_PARAMETERS],
        "sync_actions": ["call"],
        "container_parameters": {"entry_point": [sys.executable, "-S"], "command": [str(CHAOS)]},
    }
    spec.update(fields)
    return spec


def sh_spec(name: str, script: str, **fields: Any) -> dict[str, Any]:
    """An action whose only code is a shell line (its sync action is ``call``)."""
    spec: dict[str, Any] = {
        "name": name,
        "sync_actions": ["call"],
        "container_parameters": {"entry_point": ["sh", "-c"], "command": [script]},
    }
    spec.update(fields)
    return spec


# ---------------------------------------------------------------------------------------------
# gateway processes


class WorkerProcess:
    """A real ``hatchway worker`` on a home, with its own log per start."""

    def __init__(self, home: Path, **env: str) -> None:
        self.home = home
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.home / f"worker-{self.starts}.log"

    def start(self, timeout: float = 20.0, **extra_env: str) -> WorkerProcess:
        self.starts += 1
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hatchway", "worker"],
                env=child_env(self.home, **{**self.env, **extra_env}),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def ready() -> bool:
            log = self.log()
            if self.proc is not None and self.proc.poll() is not None:
                if CRASHED in log:
                    return True  # armed, and its crash point came early
                raise AssertionError(f"the worker exited early:\n{log}")
            return "hatchway worker on" in log

        wait_until(ready, timeout, 0.05, "the worker to start")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.is_alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)  # the worker only; its actions are orphaned
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.is_alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=timeout)
        return self.proc.returncode if self.proc else None


def restart_server(server: LiveServer, **env: str) -> LiveServer:
    """A new ``hatchway serve`` on the same home and port as ``server`` (which must be gone)."""
    again = LiveServer(server.home, *server.args, **{**server.env, **env})
    again.port, again.url = server.port, server.url
    again.log_path = server.home / f"server-{time.monotonic_ns()}.log"
    try:
        return again.start()
    except AssertionError:
        if CRASHED not in again.log():
            raise
        return again  # armed, and its crash point came before it answered /health


def kill_process(server: LiveServer) -> None:
    """SIGKILL the gateway process only (its actions are orphaned, as in a real crash)."""
    if server.proc and server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)


# ---------------------------------------------------------------------------------------------
# observing


def read_runs(home: Path) -> dict[str, Run]:
    """Every run in the home's database, read-only and from outside the gateway."""
    conn = sqlite3.connect(f"file:{home / 'hatchway.db'}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT data, lease_until FROM runs").fetchall()
    finally:
        conn.close()
    runs = {}
    for data, lease_until in rows:
        run = run_from_dict(json.loads(data))
        run.lease_until = lease_until  # heartbeats update only the column
        runs[run.id] = run
    return runs


def inflight_actions(home: Path) -> list[dict[str, Any]]:
    """The process executor's journaled attempts whose action started and did not end (pid, owner pid)."""
    records = []
    for path in (home / "journal").glob("*"):
        owner, attempts = read_journal(path)
        records.extend({**a, "owner_pid": int(owner.split("-")[0])} for a in attempts if a.get("pid") and owner)
    return records


def _stat(pid: int | str) -> tuple[str, int] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1])


def zombies_of(pid: int) -> list[int]:
    """Children of ``pid`` that exited and were never reaped."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(entry.name)
            if stat and stat[0] == "Z" and stat[1] == pid:
                found.append(int(entry.name))
    return found


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class LedgerLine:
    run_id: str
    attempt: int
    event: str
    pid: int
    ts: float


def read_ledger(path: Path) -> list[LedgerLine]:
    lines = []
    with contextlib.suppress(FileNotFoundError):
        for raw in path.read_text().splitlines():
            run_id, attempt, event, pid, ts = raw.split()
            lines.append(LedgerLine(run_id, int(attempt), event, int(pid), float(ts)))
    return lines


def executions(path: Path, event: str = "done") -> Counter[str]:
    """How many times each run's action really reached ``event``."""
    return Counter(line.run_id for line in read_ledger(path) if line.event == event)


class Sampler:
    """Calls ``probe`` every ``interval`` seconds in a thread until stopped; keeps the values."""

    def __init__(self, probe: Callable[[], Any], interval: float = 0.25) -> None:
        self.probe = probe
        self.interval = interval
        self.values: list[Any] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while True:  # at least one probe, however soon it is stopped
            try:
                self.values.append(self.probe())
            except Exception:
                self.errors += 1
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@contextlib.contextmanager
def health_probe(url: str, interval: float) -> Iterator[Sampler]:
    """``GET /health`` every ``interval`` seconds: latencies (s) in ``values``, failures in ``errors``."""
    with httpx.Client(base_url=url, timeout=30) as http:

        def probe() -> float:
            began = time.perf_counter()
            http.get("/health").raise_for_status()
            return time.perf_counter() - began

        with Sampler(probe, interval) as sampler:
            yield sampler


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]
