"""Run actions as host processes (the embedded default).

The action's ``entry_point + command`` is executed as an argv list, never through a shell, in a
private workspace, with a scrubbed environment (the contract's variables, the action's
``env_vars``, a PATH that finds the gateway's Python first) and, where configured, inside a
sandbox. The process loop itself - own process group, deadline, cancel, SIGTERM then SIGKILL of
the whole group - is :func:`hatchway.runtime.spawn.spawn`, shared with the container adapter.
At a deadline or cancel the answer does not wait for the kill grace: a background reaper ends it.
Nor does it wait for the workspace's removal: the files with the decrypted parameters are deleted
at once, the directories by a background janitor (an ``rmdir`` costs a journal commit on some file
systems - 0.1 to 3 ms on an ext4 mounted with ``discard``) - or, when the attempt left them empty,
they are kept for the next attempt (:mod:`hatchway.executors.spares`).

A gateway killed with SIGKILL cannot stop its actions (they run in their own sessions). Each
running action therefore has a small record under ``work/.pids`` (outside the action's reach):
its pid and start time, and those of the gateway that started it. :meth:`ProcessExecutor.recover`,
called at start-up, kills the process groups of records whose gateway is gone and removes their
workspaces; records of a live gateway on the same home (``hatchway worker``) are left alone.

Where the code lives: ``workdir`` if absolute; else relative to ``docker_config.context`` (the
action's source directory on this host, made absolute at registration); else the data directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
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
from hatchway.executors.spares import Spares
from hatchway.runtime.spawn import Janitor, ProcessReaper, enable_subreaper, kill_group, spawn
from hatchway.spec import ActionSpec

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (tells a pid from a re-used one)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    return int(stat[stat.rfind(b")") + 2 :].split()[19])


def _alive(pid: int, started: int | None) -> bool:
    """Whether ``pid`` is still the process that started at ``started``."""
    return started is not None and start_time(pid) == started


def _owner_alive(owner: str) -> bool:
    """Whether ``owner`` ("<pid>-<start time>") is a live process."""
    pid, _, started = owner.partition("-")
    return pid.isdigit() and started.isdigit() and _alive(int(pid), int(started))


def action_path() -> str:
    """PATH for actions: the gateway's own interpreter first, so ``python3`` finds ``hatchway.runtime``."""
    return f"{Path(sys.executable).parent}:{DEFAULT_PATH}"


class ProcessExecutor(BaseExecutor):
    """Actions as host processes in a private workspace."""

    name = "process"

    def __init__(self, work_dir: Path, kill_grace_seconds: float = 5.0, sandbox: Sandbox | None = None) -> None:
        self.work_dir = work_dir
        self.kill_grace_seconds = kill_grace_seconds
        self.sandbox = sandbox or Sandbox.none()
        # as the subreaper, this process inherits the orphans of its actions: reap them twice a second
        self.reaper = ProcessReaper(reap_orphans_every=0.5 if enable_subreaper() else None)
        self.janitor = Janitor()
        self._path = action_path()
        self._pids = work_dir / ".pids"
        self._pids.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._me = {"owner_pid": os.getpid(), "owner_start": start_time(os.getpid())}
        self.spares = Spares(work_dir, f"{self._me['owner_pid']}-{self._me['owner_start']}")

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
        # the record comes first: a gateway killed at any later point leaves nothing recovery misses
        self._record(workspace, None)
        is_reusable = False  # the workspace may go back to the spares: its processes are known gone
        try:
            workspace.create(invocation.config_document(), is_made=self.spares.take(workspace))
            workspace.stage(invocation.input_files, invocation.tmp_source)
        except OSError as exc:
            workspace.remove()
            return Execution(platform_error=f"could not prepare the workspace ({exc.strerror})")
        try:
            env = invocation.environment_for(str(workspace.path))
            env.setdefault("PATH", self._path)
            env.setdefault("HOME", str(workspace.path))
            env.setdefault("TMPDIR", str(workspace.tmp))
            env.setdefault("LANG", "C.UTF-8")
            env.setdefault("PYTHONUNBUFFERED", "1")
            spec = invocation.spec
            cwd = self._cwd(spec, workspace.path)
            confinement = self.sandbox.confine(spec.argv, spec, workspace.path, cwd, workspace.path.name)
            oom: list[bool] = []

            def finished() -> None:
                # called before spawn returns when the group ended with the action, else by the reaper
                oom.append(confinement.oom_killed())
                confinement.kill()  # what escaped the process group goes now, the cgroups a moment later
                self.janitor.later(confinement.release)

            ended = spawn(
                confinement.argv,
                cwd=cwd,
                env=env,
                seconds=invocation.seconds_left,
                on_output=collector.feed,
                is_cancelled=cancel.is_set,
                on_tick=collector.tick,
                kill_grace=self.kill_grace_seconds,
                reaper=self.reaper,
                on_start=lambda pid: self._record(workspace, pid),
                on_finished=finished,
            )
            is_reusable = bool(oom) and not (ended.timed_out or ended.cancelled)
            if ended.start_error:
                collector.system(f"cannot start the action: {ended.start_error}")
            execution = Execution(
                exit_code=ended.exit_code,
                signal=ended.signal,
                timed_out=ended.timed_out,
                cancelled=ended.cancelled,
                oom=bool(oom and oom[0]),
            )
            if execution.exit_code == 0 and not (execution.cancelled or execution.timed_out):
                read_outputs(workspace, execution)
            execution.duration_ms = int((time.monotonic() - started) * 1000)
            if invocation.before_cleanup is not None and not execution.timed_out:
                invocation.before_cleanup(workspace.path)
            return execution
        finally:
            workspace.discard_parameters()  # the decrypted parameters go at once, the directories a moment later
            self.janitor.later(lambda: self._clean_up(workspace, is_reusable))

    def _clean_up(self, workspace: Workspace, is_reusable: bool = False) -> None:
        if not (is_reusable and self.spares.give(workspace)):
            workspace.remove()
        # the record goes last: a crash before this leaves it, and recovery removes the workspace
        with contextlib.suppress(OSError):
            (self._pids / workspace.path.name).unlink()

    def _record(self, workspace: Workspace, pid: int | None) -> None:
        """Note a workspace (and, once started, its action) for recovery after a crash."""
        started = start_time(pid) if pid is not None else None
        record = {"pid": pid, "start": started, "workspace": workspace.path.name, **self._me}
        (self._pids / workspace.path.name).write_text(json.dumps(record))

    def recover(self) -> int:
        """Kill actions left running by a gateway that died on this home; how many groups were killed."""
        self.sandbox.recover()
        self.spares.recover(_owner_alive)
        killed = 0
        for path in self._pids.iterdir():
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
                continue
            if record["owner_pid"] != os.getpid() and _alive(record["owner_pid"], record["owner_start"]):
                continue  # another live gateway on this home owns it
            if record.get("pid") is not None and _alive(record["pid"], record["start"]):
                kill_group(record["pid"], signal.SIGKILL)
                killed += 1
            shutil.rmtree(self.work_dir / record["workspace"], ignore_errors=True)
            path.unlink(missing_ok=True)
        return killed

    def close(self) -> None:
        self.reaper.stop()
        self.janitor.close()
        self.spares.close()
