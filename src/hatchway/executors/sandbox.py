"""Isolation for host-process actions: resource limits, cgroups, and a bubblewrap sandbox.

Three levels, chosen by ``HATCHWAY_SANDBOX`` (``auto`` picks the strongest that works here):

``none``
    The action runs with a scrubbed environment only.
``limits``
    A tiny ``/bin/sh`` prologue applies resource limits derived from ``compute_requirements``
    before it ``exec``s the action: file size from ``storage``; address space from ``memory`` when
    no memory cgroup is available; a process count when the gateway is not root. Where the
    gateway may create cgroups (v1, or a delegated v2 subtree) each attempt gets its own ``pids``
    and ``memory`` cgroup, joined before the action starts: a fork bomb hits ``pids.max``, an
    allocation beyond ``memory`` is OOM-killed and reported as "out of memory", and anything that
    escaped the process group is still killed through the cgroup.
``bwrap``
    ``limits`` plus bubblewrap: the host file system read-only, ``$HATCHWAY_HOME`` (the database,
    the key file) hidden behind an empty tmpfs except the attempt's own workspace, a private
    ``/tmp`` (the action's own source directory stays visible read-only), its own PID/IPC/UTS
    namespaces, no network unless the action's metadata says ``"network": true``, all capabilities
    dropped, and ``--die-with-parent`` so nothing outlives a gateway killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hatchway.config import Settings
from hatchway.spec import ActionSpec

MAX_PROCESSES = 1024
PROLOGUE_EXIT = 125  # the prologue could not apply the limits: the action did not start


def allows_network(spec: ActionSpec) -> bool:
    """An action reaches the network only if its metadata says ``"network": true``."""
    return spec.metadata.get("network") is True


@dataclass
class Cgroups:
    """Where per-attempt cgroups are created (a parent directory per controller)."""

    version: int
    pids: Path | None = None
    memory: Path | None = None

    @classmethod
    def detect(cls, name: str) -> Cgroups | None:
        """Parent cgroups this process may create children in, or None."""
        try:
            lines = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            return None
        own: dict[str, str] = {}
        for line in lines:
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                own[controller] = path
        root = Path("/sys/fs/cgroup")
        if (root / "pids" / "cgroup.procs").exists() or (root / "memory" / "cgroup.procs").exists():
            found = cls(1)
            for controller in ("pids", "memory"):
                base = root / controller / own.get(controller, "/").lstrip("/") / name
                if _usable(base):
                    setattr(found, controller, base)
            return found if (found.pids or found.memory) else None
        unified = root / own.get("", "/").lstrip("/")
        try:
            delegated = set((unified / "cgroup.subtree_control").read_text().split())
        except OSError:
            return None
        if {"pids", "memory"} <= delegated and _usable(unified / name):
            return cls(2, unified / name, unified / name)
        return None

    def create(self, name: str, spec: ActionSpec) -> list[Path]:
        """Directories of a new attempt's cgroups, limits written."""
        made: list[Path] = []
        memory = spec.compute_requirements.memory * 1024 * 1024
        if self.version == 2 and self.pids is not None:
            path = self.pids / name
            path.mkdir(exist_ok=True)
            (path / "pids.max").write_text(str(MAX_PROCESSES))
            (path / "memory.max").write_text(str(memory))
            if (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0")
            return [path]
        if self.pids is not None:
            path = self.pids / name
            path.mkdir(exist_ok=True)
            (path / "pids.max").write_text(str(MAX_PROCESSES))
            made.append(path)
        if self.memory is not None:
            path = self.memory / name
            path.mkdir(exist_ok=True)
            (path / "memory.limit_in_bytes").write_text(str(memory))
            with contextlib.suppress(OSError):  # swap accounting may be off
                (path / "memory.memsw.limit_in_bytes").write_text(str(memory))
            made.append(path)
        return made


def visible_paths(spec: ActionSpec, cwd: Path, data_dir: Path, hidden: list[Path]) -> list[Path]:
    """Directories to show (read-only) inside the sandbox although they lie under a hidden root.

    The sandbox hides /tmp, /dev/shm and the gateway's home behind empty file systems. What the
    action needs from there stays visible: its working directory and build context, the folders
    of files its command names by absolute path (a script in /tmp), and the Python that runs
    hatchway actions with the hatchway package (a checkout and its venv in /tmp). Only real
    directories are bound, each once, never one inside another or inside the data directory.
    """
    import hatchway

    candidates = [cwd, Path(sys.prefix), Path(sys.base_prefix), Path(hatchway.__file__).resolve().parent.parent]
    candidates += [Path(arg).parent for arg in spec.argv if arg.startswith("/")]
    if spec.docker_config and spec.docker_config.context:
        candidates.append(Path(spec.docker_config.context))
    chosen: list[Path] = []
    for candidate in candidates:
        if not candidate.is_absolute():
            continue
        real = candidate.resolve()
        if not real.is_dir() or real.is_relative_to(data_dir) or not any(real.is_relative_to(h) for h in hidden):
            continue
        if any(real.is_relative_to(c) for c in chosen):
            continue
        chosen = [c for c in chosen if not c.is_relative_to(real)] + [real]
    return sorted(chosen)


def _usable(path: Path) -> bool:
    try:
        path.mkdir(exist_ok=True)
        probe = path / "hatchway-probe"
        probe.mkdir(exist_ok=True)
        probe.rmdir()
        return True
    except OSError:
        return False


@dataclass
class Confinement:
    """One attempt inside the sandbox: the argv to start, and its cgroups."""

    argv: list[str]
    cgroups: list[Path] = field(default_factory=list)

    def oom_killed(self) -> bool:
        for path in self.cgroups:
            for name in ("memory.events", "memory.oom_control"):
                with contextlib.suppress(OSError):
                    for line in (path / name).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and int(value or 0) > 0:
                            return True
        return False

    def kill(self) -> None:
        """SIGKILL every process still in the attempt's cgroups (also those that left its group)."""
        for path in self.cgroups:
            with contextlib.suppress(OSError):
                for pid in (path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(int(pid), signal.SIGKILL)

    def release(self) -> None:
        """Kill what is left and remove the cgroups."""
        self.kill()
        for path in self.cgroups:
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    self.kill()
                    os.sched_yield()


class Sandbox:
    """How the process executor confines an action."""

    def __init__(self, kind: str = "none", home: Path | None = None, cgroups: Cgroups | None = None) -> None:
        self.kind = kind
        self.home = home
        self.cgroups = cgroups if kind != "none" else None
        self.is_root = os.geteuid() == 0
        self.bwrap = shutil.which("bwrap") if kind == "bwrap" else None

    @classmethod
    def none(cls) -> Sandbox:
        return cls("none")

    @classmethod
    def from_settings(cls, settings: Settings) -> Sandbox:
        kind = settings.sandbox
        if kind not in ("auto", "bwrap", "limits", "none"):
            raise ValueError("HATCHWAY_SANDBOX is auto, bwrap, limits or none")
        if kind == "auto":
            kind = "bwrap" if bwrap_works() else "limits"
        elif kind == "bwrap" and not bwrap_works():
            raise RuntimeError("HATCHWAY_SANDBOX=bwrap but bubblewrap is missing or cannot run here")
        cgroups = Cgroups.detect(cgroup_owner_name()) if kind != "none" else None
        return cls(kind, settings.home, cgroups)

    def describe(self) -> str:
        if self.kind == "none":
            return "no sandbox"
        parts = ["bubblewrap" if self.kind == "bwrap" else "rlimits"]
        if self.cgroups:
            parts.append(f"cgroups v{self.cgroups.version}")
        elif self.is_root:
            # RLIMIT_NPROC does not bind root: without a pids cgroup nothing caps an action's processes
            parts.append("no process limit (root without cgroups)")
        return " + ".join(parts)

    def confine(self, argv: list[str], spec: ActionSpec, data_dir: Path, cwd: Path, name: str) -> Confinement:
        """The argv that starts ``argv`` confined, and the attempt's cgroups."""
        if self.kind == "none":
            return Confinement(argv)
        cgroups: list[Path] = []
        if self.cgroups is not None:
            try:
                cgroups = self.cgroups.create(name, spec)
            except OSError:
                cgroups = []
        limits = spec.compute_requirements
        steps = [f"ulimit -f {limits.storage * 1024 * 1024 * 2}"]
        if not any((p / "memory.limit_in_bytes").exists() or (p / "memory.max").exists() for p in cgroups):
            steps.append(f"ulimit -v {limits.memory * 1024}")
        if not self.is_root:
            steps.append(f"ulimit -p {MAX_PROCESSES * 4}")
        steps += [f"echo 0 > {shlex.quote(str(path / 'cgroup.procs'))}" for path in cgroups]
        prologue = " && ".join(steps) + f' || exit {PROLOGUE_EXIT}; exec "$@"'
        inner = argv
        if self.kind == "bwrap" and self.bwrap:
            inner = [self.bwrap, *self._bwrap_args(spec, data_dir, cwd), "--", *argv]
        return Confinement(["/bin/sh", "-c", prologue, "hatchway-sandbox", *inner], cgroups)

    def _bwrap_args(self, spec: ActionSpec, data_dir: Path, cwd: Path) -> list[str]:
        args = [
            "--die-with-parent",
            "--new-session",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",  # noqa: S108 - a private, empty /tmp for the action
            "--tmpfs", "/dev/shm",  # noqa: S108
        ]  # fmt: skip
        if self.home is not None:
            args += ["--tmpfs", str(self.home)]
        # the action's own code, and the Python that runs hatchway actions, stay visible (read-only)
        # even where they live under /tmp or the home (a checkout and its venv in /tmp, say)
        hidden = [Path("/tmp"), Path("/dev/shm"), *([self.home] if self.home else [])]  # noqa: S108
        for source in visible_paths(spec, cwd, data_dir, hidden):
            args += ["--ro-bind", str(source), str(source)]
        args += ["--bind", str(data_dir), str(data_dir), "--chdir", str(cwd), "--cap-drop", "ALL"]
        if not allows_network(spec):
            args.append("--unshare-net")
        return args

    def recover(self) -> None:
        """Remove cgroups left by gateways that died; those of live gateways (tests, `hatchway worker`) stay."""
        if self.cgroups is None:
            return
        for parent in {p.parent for p in (self.cgroups.pids, self.cgroups.memory) if p is not None}:
            for stale in [*parent.glob(f"{CGROUP_PREFIX}-*"), *parent.glob("hatchway-*")]:
                owner = stale.name.split("-")[1:]
                if owner and owner[0].isdigit():
                    started = owner[1] if len(owner) > 1 else None
                    if _alive(int(owner[0]), started):
                        continue
                for child in [c for c in stale.iterdir() if c.is_dir()]:
                    Confinement([], [child]).release()
                with contextlib.suppress(OSError):
                    stale.rmdir()


CGROUP_PREFIX = "hwsandbox"


def cgroup_owner_name() -> str:
    """``hwsandbox-<pid>-<start time>``: tells this gateway's cgroups from those of a dead one."""
    return f"{CGROUP_PREFIX}-{os.getpid()}-{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return "0"
    return stat[stat.rfind(b")") + 2 :].split()[19].decode()


def _alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` runs (and, when ``started`` is known, is still the process that started then)."""
    current = _start_time(pid)
    return current != "0" and (started is None or current == started)


_bwrap_checked: bool | None = None


def bwrap_works() -> bool:
    """bubblewrap is installed and can create its namespaces here (checked once)."""
    global _bwrap_checked
    if _bwrap_checked is None:
        binary = shutil.which("bwrap")
        _bwrap_checked = False
        if binary:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                done = subprocess.run(
                    [binary, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net", "--die-with-parent", "true"],
                    capture_output=True,
                    timeout=10,
                )
                _bwrap_checked = done.returncode == 0
    return _bwrap_checked
