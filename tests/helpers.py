"""Shared test plumbing: polling with a deadline, free ports, a real `hatchway serve` process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

REPO = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "test-admin-token"
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HATCHWAY_")}
    env.update(
        {
            "HATCHWAY_HOME": str(home),
            "HATCHWAY_BOOTSTRAP_TOKEN": ADMIN_TOKEN,
            "PYTHONPATH": str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", ""),
            "HATCHWAY_LOG_LEVEL": "INFO",
            # host processes unless a test asks for containers (HATCHWAY_EXECUTOR, DOCKER_HOST)
            "HATCHWAY_EXECUTOR": "process",
        }
    )
    env.update(extra)
    return env


class LiveServer:
    """A real ``hatchway serve`` process on a free port."""

    def __init__(self, home: Path, *args: str, **env: str) -> None:
        self.home = home
        self.args = list(args)
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / "server.log"
        #: what httpx verifies the server's certificate with, when it serves HTTPS
        self.verify: Any = True
        #: how ``hatchway`` is started (a test may start it through a wrapper, as another user)
        self.command = [sys.executable, "-m", "hatchway"]

    def use_https(self, verify: Any) -> LiveServer:
        """Talk to the server over HTTPS, trusting ``verify`` (a CA file, or an ssl context)."""
        self.url = self.url.replace("http://", "https://", 1)
        self.verify = verify
        return self

    def start(self, timeout: float = 20.0) -> LiveServer:
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*self.command, "serve", "--port", str(self.port), *self.args],
            # a server stuck at shutdown is aborted by stop(): faulthandler then writes every
            # thread's stack into the log, which names what it waited for
            env=child_env(self.home, **{"PYTHONFAULTHANDLER": "1", **self.env}),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(self.url + "/health", timeout=1, verify=self.verify).status_code == 200
            return False

        wait_until(healthy, timeout, 0.05, "the server to answer /health")
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the whole server process group (a crash)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (a graceful shutdown). A server still there after ``timeout`` is
        aborted (its threads' stacks go to the log, see :meth:`start`), then killed."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGABRT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5)
                self.kill()
        return self.proc.returncode if self.proc else None

    def client(self, **kwargs: Any) -> Any:
        from hatchway.client import Client

        return Client(self.url, kwargs.pop("token", ADMIN_TOKEN), **kwargs)


def processes_with(marker: str) -> list[int]:
    """PIDs whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def describe_processes(pids: list[int]) -> str:
    """``pid state uid cgroups parent`` of each of ``pids`` (at most 10): what a test that waited for them to go saw."""
    lines = []
    for pid in pids[:10]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            uid = next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("Uid:"))  # fmt: skip
            groups = ",".join(line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
                              if line.split(":")[1] in ("pids", "memory", ""))  # fmt: skip
        except (OSError, StopIteration, IndexError):
            continue
        lines.append(f"{pid} {fields[0]} uid={uid} ppid={fields[1]} cgroups={groups}")
    return f"{len(pids)} left: " + "; ".join(lines)
