"""Run actions as host processes (the embedded default).

The action's ``entry_point + command`` is executed as an argv list, never through a shell, in its
own session and process group, with a scrubbed environment (the contract's variables, the
action's ``env_vars``, a PATH that finds the gateway's Python first). One thread per attempt waits
on both pipes and a pidfd with ``selectors``, so output is collected, the deadline kept and a
cancel noticed without extra threads. At the deadline or on cancel the whole group gets SIGTERM
and, after the grace period, SIGKILL (the answer does not wait for the grace: a background reaper
finishes the job). When the main process exits, whatever it left running in its group is killed.

Where the code lives: ``workdir`` if absolute; else relative to ``docker_config.context`` (the
action's source directory on this host, made absolute at registration); else the data directory.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from hatchway.config import Settings
from hatchway.errors import ValidationFailed
from hatchway.executors.base import (
    BaseExecutor,
    Execution,
    Invocation,
    OutputCollector,
    Workspace,
    read_outputs,
)
from hatchway.executors.sandbox import Sandbox
from hatchway.spec import ActionSpec

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
#: how long the collector waits for the pipes after the main process exited
DRAIN_SECONDS = 0.05
_READ = 65536


def action_path() -> str:
    """PATH for actions: the gateway's own interpreter first, so ``python3`` finds ``hatchway.runtime``."""
    return f"{Path(sys.executable).parent}:{DEFAULT_PATH}"


class ProcessReaper:
    """Finishes kills in the background: SIGKILL to a group after its grace, then reaps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[float, int, subprocess.Popen[bytes]]] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def later(self, pgid: int, proc: subprocess.Popen[bytes], grace: float) -> None:
        with self._lock:
            self._pending.append((time.monotonic() + grace, pgid, proc))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="hatchway-reaper", daemon=True)
                self._thread.start()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopped:
            now = time.monotonic()
            with self._lock:
                due = [item for item in self._pending if item[0] <= now or _group_gone(item[1], item[2])]
                self._pending = [item for item in self._pending if item not in due]
                wait = min((item[0] for item in self._pending), default=now + 60) - now
            for _, pgid, proc in due:
                _kill_group(pgid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            self._wake.wait(timeout=max(0.01, min(wait, 0.05)))
            self._wake.clear()

    def flush(self) -> None:
        """Kill everything pending now (shutdown)."""
        with self._lock:
            pending, self._pending = self._pending, []
        for _, pgid, proc in pending:
            _kill_group(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def stop(self) -> None:
        self.flush()
        self._stopped = True
        self._wake.set()


def _group_gone(pgid: int, proc: subprocess.Popen[bytes]) -> bool:
    """True once the leader is reaped and no process of the group is left."""
    if proc.poll() is None:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class ProcessExecutor(BaseExecutor):
    """Actions as host processes in a private workspace."""

    name = "process"

    def __init__(
        self,
        work_dir: Path,
        kill_grace_seconds: float = 5.0,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.kill_grace_seconds = kill_grace_seconds
        self.sandbox = sandbox or Sandbox.none()
        self.reaper = ProcessReaper()
        self._path = action_path()
        work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    @classmethod
    def from_settings(cls, settings: Settings) -> ProcessExecutor:
        return cls(settings.work_dir, settings.kill_grace_seconds, Sandbox.from_settings(settings))

    def check(self, spec: ActionSpec, invoked: str) -> None:
        if not spec.argv:
            raise ValidationFailed.at(
                ["body", "container_parameters", "command"],
                "this action has an image but no command; the process executor runs host commands only - "
                "run it with a container executor (HATCHWAY_EXECUTOR=docker)",
                "executor_unsupported",
            )

    def _cwd(self, spec: ActionSpec, data_dir: Path) -> Path:
        workdir = spec.container_parameters.workdir if spec.container_parameters else None
        if workdir and Path(workdir).is_absolute():
            return Path(workdir)
        base = data_dir
        if spec.docker_config and spec.docker_config.context and Path(spec.docker_config.context).is_absolute():
            base = Path(spec.docker_config.context)
        return base / workdir if workdir else base

    def execute(self, invocation: Invocation, collector: OutputCollector, cancel: threading.Event) -> Execution:
        workspace = Workspace(self.work_dir, f"{invocation.run_id}-{invocation.attempt}")
        started = time.monotonic()
        try:
            workspace.create(invocation.config_document())
        except OSError as exc:
            return Execution(platform_error=f"could not prepare the workspace ({exc.strerror})")
        try:
            execution = self._run(invocation, collector, cancel, workspace)
            if execution.exit_code == 0 and not (execution.cancelled or execution.timed_out):
                read_outputs(workspace, execution)
            execution.duration_ms = int((time.monotonic() - started) * 1000)
            return execution
        finally:
            workspace.remove()

    def _run(
        self, invocation: Invocation, collector: OutputCollector, cancel: threading.Event, workspace: Workspace
    ) -> Execution:
        env = invocation.environment_for(str(workspace.path))
        env.setdefault("PATH", self._path)
        env.setdefault("HOME", str(workspace.path))
        env.setdefault("TMPDIR", str(workspace.path))
        env.setdefault("LANG", "C.UTF-8")
        env.setdefault("PYTHONUNBUFFERED", "1")
        cwd = self._cwd(invocation.spec, workspace.path)
        argv = self.sandbox.wrap(invocation.spec.argv, workspace.path, cwd, invocation.spec)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            collector.system(f"cannot start the action: {invocation.spec.argv[0]!r} was not found")
            return Execution(exit_code=127)
        except PermissionError:
            collector.system(f"cannot start the action: {invocation.spec.argv[0]!r} is not executable")
            return Execution(exit_code=126)
        except NotADirectoryError:
            collector.system("cannot start the action: its working directory does not exist")
            return Execution(exit_code=127)
        except OSError as exc:
            collector.system(f"cannot start the action ({exc.strerror})")
            return Execution(exit_code=127)
        self.sandbox.limit(proc.pid, invocation.spec)
        return self._wait(proc, invocation, collector, cancel)

    def _wait(
        self,
        proc: subprocess.Popen[bytes],
        invocation: Invocation,
        collector: OutputCollector,
        cancel: threading.Event,
    ) -> Execution:
        if proc.stdout is None or proc.stderr is None:  # pragma: no cover - Popen was given PIPE
            raise RuntimeError("the action's pipes are missing")
        deadline = time.monotonic() + max(0.0, invocation.seconds_left)
        pgid = proc.pid
        selector = selectors.DefaultSelector()
        streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
        for fd, stream in streams.items():
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ, stream)
        pidfd = os.pidfd_open(proc.pid)
        selector.register(pidfd, selectors.EVENT_READ, "exit")
        open_streams = set(streams)
        exited_at: float | None = None
        execution = Execution()
        try:
            while open_streams or exited_at is None:
                now = time.monotonic()
                if cancel.is_set() or now >= deadline:
                    execution.cancelled = cancel.is_set()
                    execution.timed_out = not execution.cancelled
                    self._terminate(pgid, proc)
                    break
                if exited_at is not None and now - exited_at > DRAIN_SECONDS:
                    # the main process is gone but something it started still holds the pipes
                    _kill_group(pgid, signal.SIGKILL)
                    self._drain(open_streams, streams, collector)
                    break
                timeout = min(deadline - now, 0.1, *([DRAIN_SECONDS] if exited_at is not None else []))
                for key, _ in selector.select(max(timeout, 0.0)):
                    if key.data == "exit":
                        exited_at = time.monotonic()
                        selector.unregister(pidfd)
                        continue
                    fd = key.fd
                    try:
                        chunk = os.read(fd, _READ)
                    except BlockingIOError:
                        continue
                    if chunk:
                        collector.feed(key.data, chunk)
                    else:
                        selector.unregister(fd)
                        open_streams.discard(fd)
                collector.tick()
        finally:
            selector.close()
            os.close(pidfd)
            proc.stdout.close()
            proc.stderr.close()
        if execution.timed_out or execution.cancelled:
            return execution
        returncode = proc.wait()
        # anything the action left behind in its group goes with it
        _kill_group(pgid, signal.SIGKILL)
        if returncode < 0:
            execution.signal = -returncode
            execution.exit_code = 128 - returncode
        else:
            execution.exit_code = returncode
        return execution

    @staticmethod
    def _drain(open_streams: set[int], streams: dict[int, str], collector: OutputCollector) -> None:
        for fd in list(open_streams):
            with contextlib.suppress(BlockingIOError, OSError):
                while chunk := os.read(fd, _READ):
                    collector.feed(streams[fd], chunk)

    def _terminate(self, pgid: int, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM the group now; SIGKILL what is left after the grace period, in the background."""
        _kill_group(pgid, signal.SIGTERM)
        if self.kill_grace_seconds <= 0:
            _kill_group(pgid, signal.SIGKILL)
            proc.wait()
            return
        self.reaper.later(pgid, proc, self.kill_grace_seconds)

    def close(self) -> None:
        self.reaper.stop()
