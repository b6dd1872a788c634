"""Run actions as host processes (the embedded default).

The action's ``entry_point + command`` is executed as an argv list, never through a shell, in a
private workspace, with a scrubbed environment (the contract's variables, the action's
``env_vars``, a PATH that finds the gateway's Python first), confined by the sandbox
(:mod:`hatchway.executors.sandbox`; under a gateway running as root, as a uid of its own that
owns its workspace). The process loop itself - own process group, deadline, cancel, SIGTERM then
SIGKILL of the whole group - is :func:`hatchway.runtime.spawn.spawn`, shared with the container
adapter. At a deadline or cancel the answer does not wait for the kill grace: a background reaper
ends it. Nor does it wait for the workspace's removal: the files with the decrypted parameters
are deleted at once, the directories by a background janitor (an ``rmdir`` costs a journal commit
on some file systems - 0.1 to 3 ms on an ext4 mounted with ``discard``) - or, when the attempt
left them empty, they are kept for the next attempt (:mod:`hatchway.executors.spares`).

Workspaces live in ``HATCHWAY_WORK_DIR``, outside the home: an action's uid may pass through the
work directory to its own workspace (0700) but list nothing there. A gateway killed with SIGKILL
cannot stop its actions (they run in their own sessions). Each process therefore keeps a journal
under ``$HATCHWAY_HOME/journal`` (out of the actions' reach, :mod:`hatchway.executors.journal`):
every workspace before it is made, its action's pid and start time, its end.
:meth:`ProcessExecutor.recover`, called at start-up, kills the process groups of attempts whose
gateway is gone and removes their workspaces; the journal of a live gateway on the same home
(``hatchway worker``) is left alone.

Where the code lives: ``workdir`` if absolute; else relative to ``docker_config.context`` (the
action's source directory on this host, made absolute at registration); else the data directory.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import threading
import time
import uuid
from pathlib import Path

from hatchway.config import Settings
from hatchway.domain.attempts import AttemptResult, Invocation, read_outputs
from hatchway.domain.spec import ActionSpec
from hatchway.errors import ValidationFailed
from hatchway.executors.base import BaseAttemptExecutor
from hatchway.executors.journal import Journal, boot_ticks, owner_alive, start_time
from hatchway.executors.journal import recover as recover_journals
from hatchway.executors.sandbox import Confinement, Sandbox, reachable_by_others, signal_of
from hatchway.executors.spares import Spares
from hatchway.executors.uids import UidPool
from hatchway.executors.warm import WarmBroken, WarmLimits, WarmPool, WarmServer, is_warm_call, start_server
from hatchway.runtime.contract import OutputCollector, Workspace
from hatchway.runtime.spawn import Janitor, Launch, ProcessReaper, enable_subreaper, spawn

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def action_path() -> str:
    """PATH for actions: the gateway's own interpreter first, so ``python3`` finds ``hatchway.runtime``."""
    return f"{Path(sys.executable).parent}:{DEFAULT_PATH}"


class ProcessExecutor(BaseAttemptExecutor):
    """Actions as host processes in a private workspace."""

    name = "process"

    def __init__(
        self,
        work_dir: Path,
        kill_grace_seconds: float = 5.0,
        sandbox: Sandbox | None = None,
        journal_dir: Path | None = None,
        warm: WarmLimits | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.kill_grace_seconds = kill_grace_seconds
        self.sandbox = sandbox or Sandbox.none()
        # as the subreaper, this process inherits the orphans of its actions: reap them twice a second
        self.reaper = ProcessReaper(reap_orphans_every=0.5 if enable_subreaper() else None)
        self.janitor = Janitor()
        python = self.sandbox.python
        # where an action's uid cannot run the gateway's interpreter, the gateway's folder on PATH
        # offers it nothing: python3 is given the reachable one instead (ActionPython)
        self._path = DEFAULT_PATH if python.substitute else action_path()
        prepare_work_dir(work_dir)
        self._pids = journal_dir or work_dir / ".pids"
        self._pids.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._me = f"{os.getpid()}-{start_time(os.getpid())}"
        self.journal = Journal(self._pids, self._me)
        self.spares = Spares(work_dir, self._me)
        self.warm = WarmPool(warm or WarmLimits.of(), self.sandbox, work_dir, self.journal, self._start_warm)

    @classmethod
    def from_settings(cls, settings: Settings) -> ProcessExecutor:
        warm = WarmLimits.of(settings.executors)
        sandbox = Sandbox.from_settings(settings)
        return cls(settings.work_dir, settings.runs.kill_grace_seconds, sandbox, settings.journal_dir, warm)

    def check(self, spec: ActionSpec, invoked: str) -> None:
        if not spec.argv:
            raise ValidationFailed.at(
                ["body", "container_parameters", "command"],
                "this action has an image but no command; the process executor runs host commands only - "
                "run it with a container executor (HATCHWAY_EXECUTOR=docker)",
                "executor_unsupported",
            )
        if self.sandbox.uids is not None:
            self._check_reachable(spec)

    def _check_reachable(self, spec: ActionSpec) -> None:
        """An action running under a uid of its own must be able to reach its code: say so before it starts.

        Only the paths the action's registration names appear in the message.
        """
        unreadable = (
            "cannot be read by the unprivileged user actions run as: make it, and every folder above it, "
            "readable by all (chmod o+rx) or register the action from another place"
        )
        workdir = spec.container_parameters.workdir if spec.container_parameters else None
        context = spec.docker_config.context if spec.docker_config else None
        for loc, folder in ((["container_parameters", "workdir"], workdir), (["docker_config", "context"], context)):
            path = Path(folder) if folder else None
            if path and path.is_absolute() and path.is_dir() and not reachable_by_others(path, stat.S_IXOTH):
                raise ValidationFailed.at(["body", *loc], f"{folder} {unreadable}", "action_unreadable")
        python = self.sandbox.python
        if python.names_gateway(spec.argv[0]) and not (python.substitute or reachable_by_others(python.gateway)):
            raise ValidationFailed.at(
                ["body", "container_parameters", "entry_point"],
                "the gateway's Python cannot be run by the unprivileged user actions run as, and no "
                f"python{sys.version_info.major}.{sys.version_info.minor} is installed where every user can run it",
                "action_unreadable",
            )
        for index, arg in enumerate(spec.argv):
            if not arg.startswith("/") or not Path(arg).is_file() or (index == 0 and python.names_gateway(arg)):
                continue
            if not reachable_by_others(arg, stat.S_IXOTH if index == 0 else stat.S_IROTH):
                where: list[str | int] = ["body", "container_parameters", "entry_point" if index == 0 else "command"]
                raise ValidationFailed.at(where, f"{arg} {unreadable}", "action_unreadable")

    def _cwd(self, spec: ActionSpec, data_dir: Path) -> Path:
        workdir = spec.container_parameters.workdir if spec.container_parameters else None
        if workdir and Path(workdir).is_absolute():
            return Path(workdir)
        base = data_dir
        if spec.docker_config and spec.docker_config.context and Path(spec.docker_config.context).is_absolute():
            base = Path(spec.docker_config.context)
        return base / workdir if workdir else base

    def execute(self, invocation: Invocation, collector: OutputCollector, cancel: threading.Event) -> AttemptResult:
        if is_warm_call(invocation):
            server = self.warm.lease(invocation)
            if server is not None:
                try:
                    return self._execute_warm(server, invocation, collector, cancel)
                except WarmBroken:
                    pass  # logged by the pool: this call runs cold
        return self._execute_cold(invocation, collector, cancel)

    def _execute_cold(
        self, invocation: Invocation, collector: OutputCollector, cancel: threading.Event
    ) -> AttemptResult:
        workspace = Workspace(self.work_dir, f"{invocation.run_id}-{invocation.attempt}")
        started = time.monotonic()
        uids = self.sandbox.uids
        uid = uids.take() if uids is not None else None
        if uids is not None and uid is None:
            return AttemptResult(platform_error="every uid of HATCHWAY_SANDBOX_UIDS is in use by an attempt")
        # the journal comes first: a gateway killed at any later point leaves nothing recovery misses
        self.journal.began(workspace.path.name)
        outcome: list[bool] = []  # whether the workspace may go back to the spares
        confinement: Confinement | None = None
        handover = UidHandover(uids, uid)
        try:
            self._prepare(workspace, invocation, uid)
            env, argv = self._environment(invocation, workspace)
            cwd = self._cwd(invocation.spec, workspace.path)
            confinement = self.sandbox.confine(argv, invocation.spec, workspace.path, cwd, workspace.path.name, uid)
        except OSError as exc:
            if confinement is not None:
                confinement.release()
            workspace.remove()
            self.journal.ended(workspace.path.name)
            if uids is not None and uid is not None:
                uids.give(uid, is_clean=True)  # nothing ran as it
            return AttemptResult(platform_error=f"could not prepare the workspace ({exc.strerror or exc})")
        try:
            launch = confinement.launch if confinement.is_confined else None
            return self._run(invocation, collector, cancel, workspace, workspace.path.name, confinement, handover,
                             env, cwd, started, launch, outcome)  # fmt: skip
        finally:
            workspace.discard_parameters()  # the decrypted parameters go at once, the directories a moment later
            is_reusable = bool(outcome and outcome[0])
            self.janitor.later(lambda: self._clean_up(workspace, is_reusable, uid, handover))

    def _execute_warm(
        self, server: WarmServer, invocation: Invocation, collector: OutputCollector, cancel: threading.Event
    ) -> AttemptResult:
        """The call as a fork of ``server``, in a workspace inside the server's directory; WarmBroken
        (the server released as broken, nothing of the call left) when the server does not take it."""
        workspace = Workspace(server.directory, f"{invocation.run_id}-{invocation.attempt}-{uuid.uuid4().hex[:8]}")
        started = time.monotonic()
        # a name with a '/': recovery kills the call's group and leaves the files to the server's entry
        name = f"{server.directory.name}/{workspace.path.name}"
        self.journal.began(name)
        spare = None
        try:
            self._prepare(workspace, invocation, server.uid)
            env, _ = self._environment(invocation, workspace)
            cwd = self._cwd(invocation.spec, workspace.path)
            spare = server.take()
            child = spare.start(cwd, env)
        except (OSError, WarmBroken) as exc:
            if spare is not None:
                spare.discard()
            workspace.remove()
            self.journal.ended(name)
            self.warm.release(server, is_broken=True)
            raise WarmBroken(str(exc)) from exc
        outcome: list[bool] = []
        try:
            handover = UidHandover(None, None)  # the uid is the server's
            return self._run(invocation, collector, cancel, workspace, name, spare.confinement, handover,
                             env, cwd, started, lambda argv, options: child, outcome)  # fmt: skip
        finally:
            workspace.discard_parameters()
            is_reusable = bool(outcome and outcome[0])
            self.janitor.later(lambda: self._clean_up(workspace, is_reusable, server.uid, journal_name=name))
            self.warm.release(server)

    def _environment(self, invocation: Invocation, workspace: Workspace) -> tuple[dict[str, str], list[str]]:
        """A call's environment (the contract's, never parameters) and the argv that runs its command."""
        env = invocation.environment_for(str(workspace.path))
        env.setdefault("PATH", self._path)
        env.setdefault("HOME", str(workspace.path))
        env.setdefault("TMPDIR", str(workspace.tmp))
        env.setdefault("LANG", "C.UTF-8")
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env, self.sandbox.python.argv(invocation.spec.argv, env)

    def _start_warm(self, server: WarmServer, invocation: Invocation) -> None:
        """Start the action's warm server: its command, confined as a cold attempt, with the environment
        a cold attempt gets minus what belongs to one call (the run, the data directory, parameters)."""
        spec = invocation.spec
        container = spec.container_parameters
        env = dict(container.env_vars or {}) if container else {}
        env.setdefault("PATH", self._path)
        env.setdefault("LANG", "C.UTF-8")
        env.setdefault("PYTHONUNBUFFERED", "1")
        argv = self.sandbox.python.argv(spec.argv, env)
        seconds = min(self.warm.limits.start_seconds, max(0.0, invocation.seconds_left / 2))
        cwd = self._cwd(spec, server.directory)
        start_server(server, spec, argv, cwd, env, self.sandbox, self.journal, seconds)

    def _run(
        self,
        invocation: Invocation,
        collector: OutputCollector,
        cancel: threading.Event,
        workspace: Workspace,
        name: str,
        confinement: Confinement,
        handover: UidHandover,
        env: dict[str, str],
        cwd: Path,
        started: float,
        launch: Launch | None,
        outcome: list[bool],
    ) -> AttemptResult:
        """Run the prepared attempt to its end; ``outcome`` gets whether its workspace may be reused."""
        spec = invocation.spec
        oom: list[bool] = []
        confined = confinement

        def finished() -> None:
            # called before spawn returns when the group ended with the action, else by the reaper
            oom.append(confined.oom_killed())
            confined.kill()  # what escaped the process group goes now, the cgroups a moment later
            self.janitor.later(lambda: self._release(confined, handover))

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
            on_start=lambda pid: self.journal.started(name, pid, spawned_after),
            on_finished=finished,
            launch=launch,
        )
        outcome.append(bool(oom) and not (ended.timed_out or ended.cancelled))
        start_error = ended.start_error or confinement.start_error(spec.argv[0])
        if start_error:
            collector.system(f"cannot start the action: {start_error}")
        signal = ended.signal
        if signal is None and confinement.is_bwrap and not start_error:
            # bubblewrap's init reports its child's death by signal N as exit code 128+N (as a
            # shell does) and gives nothing else to tell it apart: an action that itself exits
            # 129..192 under bubblewrap reads as killed by a signal. The other levels exec the
            # action in place and see its real wait status, so there the two stay apart.
            signal = signal_of(ended.exit_code)
        execution = AttemptResult(
            exit_code=ended.exit_code,
            signal=signal,
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

    def _prepare(self, workspace: Workspace, invocation: Invocation, uid: int | None) -> None:
        """Make (or take from the spares) the attempt's workspace, owned by ``uid``, with its inputs."""
        config = invocation.config_document()
        try:
            workspace.create(config, is_made=self.spares.take(workspace), owner=uid)
        except FileNotFoundError:
            # the work directory went (a temporary-files cleaner, say): make it again
            prepare_work_dir(self.work_dir)
            workspace.create(config, owner=uid)
        workspace.stage(invocation.input_files, invocation.tmp_source)

    def _release(self, confinement: Confinement, handover: UidHandover) -> None:
        """Once the attempt's processes ended: its cgroups, then (with its workspace gone) its uid -
        swept first unless its cgroups held every process it started."""
        is_gone = confinement.release()
        handover.released(is_clean=is_gone and confinement.has_pids_cgroup)

    def _clean_up(
        self,
        workspace: Workspace,
        is_reusable: bool = False,
        uid: int | None = None,
        handover: UidHandover | None = None,
        journal_name: str | None = None,
    ) -> None:
        if not (is_reusable and self.spares.give(workspace, uid)):
            workspace.remove()
        if handover is not None:
            handover.cleaned_up()
        # the journal hears last: a crash before this leaves the attempt open, and recovery removes it
        self.journal.ended(journal_name or workspace.path.name)

    def recover(self) -> int:
        """Kill actions left running by a gateway that died on this home; how many groups were killed."""
        self.sandbox.recover()
        self.spares.recover(owner_alive)
        killed = recover_journals(self._pids, self.work_dir, self._me)
        # journals of a release that kept them, and the workspaces, in $HATCHWAY_HOME/work
        legacy = self._pids.parent / "work"
        if (legacy / ".pids").is_dir() and legacy != self.work_dir:
            killed += recover_journals(legacy / ".pids", legacy, self._me)
            Spares(legacy, self._me).recover(owner_alive)
            with contextlib.suppress(OSError):
                (legacy / ".pids").rmdir()
                legacy.rmdir()
        return killed

    def close(self) -> None:
        self.warm.close()
        self.reaper.stop()
        self.janitor.close()
        self.spares.close()
        self.journal.close()
        self.sandbox.close()
        with contextlib.suppress(OSError):  # an empty work directory goes (another gateway remakes it)
            self.work_dir.rmdir()


class UidHandover:
    """Gives an attempt's uid back once both its processes are released and its workspace is gone
    (removed, or kept as a spare that the next attempt takes for its own uid): a uid that served one
    attempt never reaches that attempt's files from the next one, even where no Landlock keeps it out."""

    def __init__(self, uids: UidPool | None, uid: int | None) -> None:
        self._uids, self._uid = uids, uid
        self._lock = threading.Lock()
        self._waiting = 2  # the release of the processes and the clean-up of the workspace
        self._is_clean = False

    def released(self, is_clean: bool) -> None:
        self._is_clean = is_clean
        self._done()

    def cleaned_up(self) -> None:
        self._done()

    def _done(self) -> None:
        with self._lock:
            self._waiting -= 1
            if self._waiting:
                return
        if self._uids is not None and self._uid is not None:
            self._uids.give(self._uid, is_clean=self._is_clean)


def prepare_work_dir(path: Path) -> None:
    """The work directory: the gateway's, searchable by all (0711) so that an action's uid reaches its
    own workspace (0700) by name, and never lists the others."""
    path.mkdir(parents=True, exist_ok=True, mode=0o711)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise RuntimeError(f"the work directory {path} is not a directory of this user (HATCHWAY_WORK_DIR)")
    if stat.S_IMODE(info.st_mode) != 0o711:
        path.chmod(0o711)
