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
process therefore keeps a journal under ``work/.pids`` (outside the action's reach,
:mod:`hatchway.executors.journal`): every workspace before it is made, its action's pid and start
time, its end. :meth:`ProcessExecutor.recover`, called at start-up, kills the process groups of
attempts whose gateway is gone and removes their workspaces; the journal of a live gateway on
the same home (``hatchway worker``) is left alone.

Where the code lives: ``workdir`` if absolute; else relative to ``docker_config.context`` (the
action's source directory on this host, made absolute at registration); else the data directory.
"""

from __future__ import annotations

import os
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
from hatchway.executors.journal import Journal, boot_ticks, owner_alive, start_time
from hatchway.executors.journal import recover as recover_journals
from hatchway.executors.sandbox import Sandbox
from hatchway.executors.spares import Spares
from hatchway.runtime.spawn import Janitor, ProcessReaper, enable_subreaper, spawn
from hatchway.spec import ActionSpec

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


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
        self._me = f"{os.getpid()}-{start_time(os.getpid())}"
        self.journal = Journal(self._pids, self._me)
        self.spares = Spares(work_dir, self._me)

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
        # the journal comes first: a gateway killed at any later point leaves nothing recovery misses
        self.journal.began(workspace.path.name)
        is_reusable = False  # the workspace may go back to the spares: its processes are known gone
        try:
            workspace.create(invocation.config_document(), is_made=self.spares.take(workspace))
            workspace.stage(invocation.input_files, invocation.tmp_source)
        except OSError as exc:
            workspace.remove()
            self.journal.ended(workspace.path.name)
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

            spawned_after = boot_ticks()
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
                on_start=lambda pid: self.journal.started(workspace.path.name, pid, spawned_after),
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
                read_outputs(workspace, execution, invocation.output_mode)
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
        # the journal hears last: a crash before this leaves the attempt open, and recovery removes it
        self.journal.ended(workspace.path.name)

    def recover(self) -> int:
        """Kill actions left running by a gateway that died on this home; how many groups were killed."""
        self.sandbox.recover()
        self.spares.recover(owner_alive)
        return recover_journals(self._pids, self.work_dir, self._me)

    def close(self) -> None:
        self.reaper.stop()
        self.janitor.close()
        self.spares.close()
        self.journal.close()
