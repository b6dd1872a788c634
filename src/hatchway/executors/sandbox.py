"""Confinement of host-process actions: what an action can reach, and what it may use up.

``HATCHWAY_SANDBOX`` picks the level; ``auto`` (the default) the strongest that works here:

``none``
    The action runs as the gateway's user with a scrubbed environment, nothing else. Only for a
    gateway whose every tenant is trusted: the action can read the key file and the database.
``limits``
    The resource layer, under every level but ``none``: a ``/bin/sh`` prologue applies rlimits
    (file size from ``storage``; address space from ``memory`` without a memory cgroup; a process
    count) and, where the gateway may create cgroups (v1, or a delegated v2 subtree), each attempt
    gets a ``pids`` and a ``memory`` cgroup: a fork bomb hits ``pids.max``, an allocation beyond
    ``memory`` is OOM-killed and reported as "out of memory", and anything that left the process
    group is still killed through the cgroup. When the gateway runs as root the action also runs
    under a uid and gid of its own, taken from ``HATCHWAY_SANDBOX_UIDS`` for this attempt alone,
    without supplementary groups or capabilities and with ``no_new_privs``: with ``$HATCHWAY_HOME``
    0700 and every workspace private to its attempt's uid, file permissions keep the key, the
    database and other runs' workspaces out of reach even on a kernel without Landlock. Alone
    (a non-root gateway) this level confines nothing, and ``hatchway serve`` refuses it.
``landlock``
    ``limits`` plus a Landlock domain (Linux >= 5.13): the action may read and execute the system
    (``/usr``, ``/lib*``, ``/bin``, ``/sbin``, ``/etc``), read ``/proc`` and ``/sys``, use
    ``/dev/null`` and the random devices, read the Python that runs hatchway actions and, of the
    gateway's own package, only ``hatchway.runtime``; read its own source (its working directory,
    ``docker_config.context``, the folders of files its command names by absolute path) and
    read-write its workspace, whose ``tmp/`` is its TMPDIR. Nothing else: not the home, not other
    runs' workspaces, not the gateway's code. With ABI >= 4 it may not connect or bind TCP unless
    its metadata says ``"network": true``; with ABI >= 6 it cannot signal processes outside its
    domain nor reach abstract unix sockets. Landlock also keeps it from ptracing the gateway.
``bwrap``
    ``limits`` plus bubblewrap: the host file system read-only, with the home, the work directory
    (but the attempt's own workspace), ``/tmp``, ``/dev/shm`` and the gateway's package (but
    ``hatchway.runtime``) hidden behind empty file systems; its own PID, IPC and UTS namespaces,
    no network at all unless ``"network": true``, no capabilities, ``--die-with-parent``.

Landlock domains, ``no_new_privs`` and the uid belong to the thread that starts the action
(:func:`hatchway.runtime.start_confined`): the gateway's other threads keep their rights.
The started prologue then waits for one line on its stdin, written once the gateway has placed it
in its cgroups and the starting thread is gone, so nothing of the action runs outside them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hatchway.config import Settings
from hatchway.domain.spec import ActionSpec
from hatchway.errors import ValidationFailed
from hatchway.executors.uids import UidPool, ids_mapped
from hatchway.runtime.confine import (
    EVERYTHING,
    READ,
    READ_DIR,
    READ_FILE,
    TRUNCATE,
    WRITE_FILE,
    Ruleset,
    abi,
    start_confined,
)

MAX_PROCESSES = 1024
PROLOGUE_EXIT = 125  # the prologue could not apply the limits: the action did not start
#: the highest signal number (SIGRTMAX): an exit code 128+N up to this reports signal N
MAX_SIGNAL = 64
#: rules a directory that holds a private path is split into, at most
MAX_SPLIT_RULES = 512
SYSTEM_READ = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
SYSTEM_INSPECT = ("/proc", "/sys")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


def allows_network(spec: ActionSpec) -> bool:
    """An action reaches the network only if its metadata says ``"network": true``."""
    return spec.metadata.get("network") is True


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def reachable_by_others(path: str | Path, want: int = stat.S_IROTH) -> bool:
    """Whether a user with no claim on ``path`` (not its owner, not in its group) can reach it:
    every directory on the way searchable by all, and the path itself ``want`` by all."""
    given = Path(path).absolute()
    for candidate in {given, given.resolve()}:
        for folder in list(candidate.parents)[:-1]:
            try:
                if not folder.stat().st_mode & stat.S_IXOTH:
                    return False
            except OSError:
                return False
    try:
        return bool(given.stat().st_mode & want)
    except OSError:
        return False


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


def exec_check(fd: int) -> str:
    """Shell code that ends the last shell before the action when its command cannot be started,
    telling the gateway why on ``fd`` (the status socket) - an exit code alone cannot say it: the
    action may exit 127 itself, and bubblewrap reports its own ``execvp`` failure as exit 1."""
    report = f"echo {{0}} >&{fd}; exit {{0}}"
    return (
        f'case $1 in */*) [ -e "$1" ] || {{ {report.format(127)}; }}; '
        f'[ -f "$1" ] && [ -x "$1" ] || {{ {report.format(126)}; }};; '
        f'*) command -v -- "$1" >/dev/null 2>&1 || {{ {report.format(127)}; }};; esac'
    )


def signal_of(exit_code: int | None) -> int | None:
    """The signal an exit code of 128+N stands for where an init process (bubblewrap's, Docker's)
    reports its child's end the way a shell does; None for any other code."""
    if exit_code is not None and 128 < exit_code <= 128 + MAX_SIGNAL:
        return exit_code - 128
    return None


def visible_paths(
    spec: ActionSpec, cwd: Path, data_dir: Path, hidden: list[Path], extra: Iterable[Path] = ()
) -> list[Path]:
    """Directories to show (read-only) inside the sandbox although they lie under a hidden root.

    The sandbox hides /tmp, /dev/shm and the gateway's home behind empty file systems. What the
    action needs from there stays visible: its working directory and build context, the folders
    of files its command names by absolute path (a script in /tmp), and the Python that runs
    hatchway actions (a venv in /tmp). Only real directories are bound, each once, never one
    inside another or inside the data directory.
    """
    candidates = [cwd, Path(sys.prefix), Path(sys.base_prefix), *extra]
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


def split_around(path: str, access: int, private: list[str], budget: list[int] | None = None) -> list[tuple[str, int]]:
    """Rules that allow ``access`` beneath ``path`` but never beneath a ``private`` path.

    A directory that holds a private path is replaced by its entries (recursively); one inside a
    private path is left out; symbolic links count where they lead. At most :data:`MAX_SPLIT_RULES`.
    """
    budget = budget if budget is not None else [MAX_SPLIT_RULES]
    real = os.path.realpath(path)
    if any(_within(real, p) for p in private) or budget[0] <= 0:
        return []
    if not any(_within(p, real) for p in private):
        budget[0] -= 1
        return [(real, access)]
    try:
        names = sorted(os.listdir(real))
    except OSError:
        return []
    rules: list[tuple[str, int]] = []
    for name in names:
        rules += split_around(f"{real.rstrip('/')}/{name}", access, private, budget)
    return rules


@dataclass
class ActionPython:
    """The interpreter that runs actions naming the gateway's own Python (``python3``, ``sys.executable``).

    Where the action's uid cannot reach the gateway's interpreter (a pyenv under /root, a venv in a
    private home), a reachable interpreter of the same X.Y runs them instead, with the gateway's
    site-packages and the ``hatchway`` package on ``PYTHONPATH`` where those are reachable.
    """

    gateway: str
    substitute: str | None = None
    pythonpath: list[str] = field(default_factory=list)

    @classmethod
    def find(cls, as_other_user: bool) -> ActionPython:
        import site

        import hatchway

        gateway = os.path.realpath(sys.executable)
        found = cls(gateway)
        if not as_other_user or reachable_by_others(sys.executable, stat.S_IXOTH):
            return found
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
            candidate = Path(folder) / version
            if candidate.is_file() and reachable_by_others(candidate, stat.S_IXOTH):
                found.substitute = str(candidate)
                break
        package_parent = str(Path(hatchway.__file__).resolve().parent.parent)
        for folder in [*site.getsitepackages(), package_parent]:
            if folder not in found.pythonpath and reachable_by_others(folder, stat.S_IXOTH):
                found.pythonpath.append(folder)
        return found

    def argv(self, argv: list[str], env: dict[str, str]) -> list[str]:
        """``argv`` with the substitute where it names the gateway's interpreter (its ``PYTHONPATH`` set in ``env``)."""
        if self.substitute is None or not self.names_gateway(argv[0]):
            return argv
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join([*filter(None, [env.get("PYTHONPATH")]), *self.pythonpath])
        return [self.substitute, *argv[1:]]

    def names_gateway(self, program: str) -> bool:
        """Whether ``program`` (an argv[0]) means the gateway's interpreter."""
        if "/" not in program:
            return program in ("python", "python3", f"python{sys.version_info.major}.{sys.version_info.minor}")
        return os.path.realpath(program) == self.gateway


@dataclass
class Confinement:
    """One attempt inside the sandbox: the argv to start, how to start it, its cgroups and uid."""

    argv: list[str]
    cgroups: list[Path] = field(default_factory=list)
    uid: int | None = None
    ruleset: Ruleset | None = None
    is_confined: bool = False
    #: a pids cgroup holds every process the attempt starts (so releasing it leaves none behind)
    has_pids_cgroup: bool = False
    #: the action runs inside bubblewrap (whose init reports a signal as exit code 128+N)
    is_bwrap: bool = False
    #: the gateway's end of the prologue's stdin (see :meth:`launch`)
    _status: socket.socket | None = field(default=None, repr=False)

    def launch(self, argv: list[str], options: dict[str, Any]) -> subprocess.Popen[bytes]:
        """Start the prologue from a confined thread, place it in the cgroups, then let it go on.

        The prologue's stdin is one end of a socket pair: the gateway writes the line that lets it go
        on, and the last shell before the action writes back why the command cannot be started
        (:func:`exec_check`); the action itself gets ``/dev/null``.
        """
        status, child = socket.socketpair()
        options["stdin"] = child.fileno()

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(argv, **options)

        try:
            proc = start_confined(start, uid=self.uid, gid=self.uid, ruleset=self.ruleset)
        except BaseException:
            status.close()
            raise
        finally:
            child.close()
            if self.ruleset is not None:
                self.ruleset.close()
        self._status = status
        try:
            for path in self.cgroups:
                with open(path / "cgroup.procs", "w") as procs:
                    procs.write(str(proc.pid))
            status.sendall(b"\n")
        except OSError:
            pass  # the prologue reads end-of-file and exits with PROLOGUE_EXIT: the action never runs
        finally:
            with contextlib.suppress(OSError):
                status.shutdown(socket.SHUT_WR)
        return proc

    def start_error(self, program: str) -> str | None:
        """Why the action's command could not be started (as the last shell before it found), or None.

        Read once the attempt's process has ended: the report, if any, was written before it did.
        """
        status, self._status = self._status, None
        if status is None:
            return None
        try:
            status.setblocking(False)
            report = status.recv(16).strip()
        except OSError:
            report = b""
        finally:
            status.close()
        if report == b"127":
            return f"{program!r} was not found"
        if report == b"126":
            return f"{program!r} is not executable"
        return None

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

    def release(self) -> bool:
        """Kill what is left and remove the cgroups; whether they are all gone (and their processes with them)."""
        if self.ruleset is not None:
            self.ruleset.close()
        if self._status is not None:
            self._status.close()
            self._status = None
        self.kill()
        is_gone = True
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
            else:
                is_gone = False
        return is_gone


class Sandbox:
    """How the process executor confines an action."""

    def __init__(
        self,
        kind: str = "none",
        home: Path | None = None,
        cgroups: Cgroups | None = None,
        *,
        work_dir: Path | None = None,
        uids: UidPool | None = None,
    ) -> None:
        import hatchway

        self.kind = kind
        self.home = home
        self.work_dir = work_dir
        self.cgroups = cgroups if kind != "none" else None
        self.is_root = os.geteuid() == 0
        self.bwrap = shutil.which("bwrap") if kind == "bwrap" else None
        self.uids = uids if kind != "none" else None
        self.python = ActionPython.find(self.uids is not None)
        self.package = Path(hatchway.__file__).resolve().parent
        self.private = [os.path.realpath(p) for p in (home, work_dir, self.package) if p is not None]
        self._static: list[tuple[int, int, bool]] = []
        if kind == "landlock":
            self._static = self._open_static_rules()

    @classmethod
    def none(cls) -> Sandbox:
        return cls("none")

    @classmethod
    def from_settings(cls, settings: Settings) -> Sandbox:
        kind = settings.executors.sandbox
        is_root = os.geteuid() == 0
        if kind == "auto":
            kind = "bwrap" if bwrap_works() else "landlock" if abi() >= 1 else "limits"
        elif kind == "bwrap" and not bwrap_works():
            raise ValidationFailed.at(
                ["env", "HATCHWAY_SANDBOX"], "HATCHWAY_SANDBOX=bwrap but bubblewrap is missing or cannot run here"
            )
        elif kind == "landlock" and abi() < 1:
            raise ValidationFailed.at(
                ["env", "HATCHWAY_SANDBOX"], "HATCHWAY_SANDBOX=landlock but this kernel offers no Landlock"
            )
        uids = None
        if kind != "none" and is_root:
            if not ids_mapped(*settings.executors.sandbox_uids):
                raise ValidationFailed.at(
                    ["env", "HATCHWAY_SANDBOX_UIDS"],
                    "HATCHWAY_SANDBOX_UIDS lies outside the uids (or gids) this user namespace maps: choose a range "
                    "inside /proc/self/uid_map and gid_map",
                )
            uids = UidPool(*settings.executors.sandbox_uids)
            if kind == "bwrap" and not bwrap_works(uids.first):
                kind = "landlock" if abi() >= 1 else "limits"
        if kind != "none":
            secure_home(settings.home)
        cgroups = Cgroups.detect(cgroup_owner_name()) if kind != "none" else None
        return cls(kind, settings.home, cgroups, work_dir=settings.work_dir, uids=uids)

    # -- what the gateway says about it -------------------------------------------------------

    def refusal(self) -> str | None:
        """Why a multi-tenant gateway must not start with this sandbox, or None."""
        if self.kind == "limits" and self.uids is None:
            return (
                "nothing here can keep a host action away from the gateway's key file and database: "
                "bubblewrap is not installed, the kernel offers no Landlock, and the gateway does not run "
                "as root (which would run each action under a uid of its own). Install bubblewrap, run on "
                "Linux >= 5.13, or set HATCHWAY_SANDBOX=none to run actions unconfined (trusted tenants only)"
            )
        return None

    def describe(self) -> str:
        """The level in force, in a few words."""
        if self.kind == "none":
            return "none"
        parts = {"bwrap": ["bubblewrap"], "landlock": [f"landlock ABI {abi()}"], "limits": []}[self.kind]
        if self.uids is not None:
            parts.append(f"a uid of its own per attempt ({self.uids.first}-{self.uids.last})")
        if self.cgroups:
            parts.append(f"cgroups v{self.cgroups.version}")
        elif self.is_root and self.uids is None:
            # RLIMIT_NPROC does not bind root: without a pids cgroup nothing caps an action's processes
            parts.append("no process limit (root without cgroups)")
        parts.append("rlimits")
        return f"{self.kind}: " + " + ".join(parts)

    def reach(self) -> str:
        """What an action can reach at this level, in a sentence."""
        if self.kind == "none":
            return (
                f"an action runs as the gateway's user (uid {os.geteuid()}) and reaches what it can: "
                "the home's key file and database too (HATCHWAY_SANDBOX=none)"
            )
        if self.kind == "landlock":
            tcp = "no TCP unless its metadata says network: true" if abi() >= 4 else "the network"
            return (
                "an action reads the system, its Python and its own source and writes only its workspace; "
                f"{tcp}; the home, other workspaces and the gateway's code are out of reach"
            )
        if self.kind == "bwrap":
            return (
                "an action sees the host read-only without the home, other workspaces and the gateway's code, "
                "writes only its workspace and a private /tmp; no network unless its metadata says network: true"
            )
        return (
            "an action reads what any unprivileged user may (the gateway's code too) and writes only its "
            "workspace; the home and other workspaces are out of reach; the network is open"
        )

    # -- one attempt ---------------------------------------------------------------------------

    def confine(
        self, argv: list[str], spec: ActionSpec, data_dir: Path, cwd: Path, name: str, uid: int | None = None
    ) -> Confinement:
        """The argv that starts ``argv`` confined (as ``uid``, if given), with the attempt's cgroups."""
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
        if uid is not None or not self.is_root:
            steps.append(f"ulimit -p {MAX_PROCESSES * 4}")
        # the first line waits for the gateway (see the module's docstring); the last shell before
        # the action checks that its command can be started (inside bubblewrap's view, where bwrap's
        # own execvp failure would be an exit 1 that reads like the action's user error)
        prologue = f"read -r _ || exit {PROLOGUE_EXIT}; {' && '.join(steps)} || exit {PROLOGUE_EXIT}; "
        inner = argv
        if self.kind == "bwrap" and self.bwrap:
            checked = ["/bin/sh", "-c", f'{exec_check(3)}; exec "$@" 3<&-', "hatchway-action", *argv]
            inner = [self.bwrap, *self._bwrap_args(spec, data_dir, cwd, uid is not None), "--", *checked]
            prologue += 'exec "$@" 3<&0 </dev/null'
        else:
            prologue += f'{exec_check(0)}; exec "$@" </dev/null'
        ruleset = self._ruleset(spec, data_dir, cwd) if self.kind == "landlock" else None
        started = ["/bin/sh", "-c", prologue, "hatchway-sandbox", *inner]
        has_pids = any((p / "pids.max").exists() for p in cgroups)
        return Confinement(
            started, cgroups, uid, ruleset, is_confined=True, has_pids_cgroup=has_pids, is_bwrap=inner is not argv
        )

    def _ruleset(self, spec: ActionSpec, data_dir: Path, cwd: Path) -> Ruleset:
        ruleset = Ruleset(network=allows_network(spec))
        try:
            for fd, access, is_dir in self._static:
                ruleset.allow_fd(fd, access, is_dir)
            ruleset.allow(str(data_dir), EVERYTHING)
            for source in self._sources(spec, cwd):
                for path, access in split_around(source, READ, self.private):
                    ruleset.allow(path, access)
        except BaseException:
            ruleset.close()
            raise
        return ruleset

    @staticmethod
    def _sources(spec: ActionSpec, cwd: Path) -> list[str]:
        """The action's own code: its working directory, its build context, the folders of files its command names."""
        found = [str(cwd)]
        if spec.docker_config and spec.docker_config.context and Path(spec.docker_config.context).is_absolute():
            found.append(spec.docker_config.context)
        for arg in spec.argv:
            if arg.startswith("/") and Path(arg).is_file():
                found.append(str(Path(arg).parent))
        return found

    def _open_static_rules(self) -> list[tuple[int, int, bool]]:
        """The rules every attempt shares, opened once (``O_PATH``): the system, Python, hatchway.runtime."""
        wanted: list[tuple[str, int]] = []
        for path in SYSTEM_READ:
            wanted += split_around(path, READ, self.private)
        for path in SYSTEM_INSPECT:
            wanted += split_around(path, READ_FILE | READ_DIR, self.private)
        wanted += [(path, READ_FILE | WRITE_FILE | TRUNCATE) for path in DEVICES]
        resolver = os.path.realpath("/etc/resolv.conf")  # often a link into /run
        if not any(_within(resolver, p) for p in self.private):
            wanted.append((resolver, READ_FILE))
        prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, *self.python.pythonpath}
        if self.python.substitute:
            prefixes.add(str(Path(os.path.realpath(self.python.substitute)).parent.parent))
        for prefix in sorted(prefixes):
            wanted += split_around(prefix, READ, self.private)
        # of the gateway's package only what actions import: hatchway/__init__.py and hatchway.runtime
        # (listing the folders, names only, is how Python finds them)
        wanted += [
            (str(self.package.parent), READ_DIR),
            (str(self.package / "__init__.py"), READ_FILE),
            (str(self.package / "runtime"), READ),
        ]
        opened: list[tuple[int, int, bool]] = []
        for path, access in wanted:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            opened.append((fd, access, stat.S_ISDIR(os.fstat(fd).st_mode)))
        return opened

    def _bwrap_args(self, spec: ActionSpec, data_dir: Path, cwd: Path, is_other_user: bool) -> list[str]:
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
        # what the action's own uid cannot reach anyway needs no hiding (and bubblewrap, running
        # as that uid, could not mount over it)
        private = [
            Path(p)
            for p in (self.home, self.work_dir)
            if p is not None and (not is_other_user or reachable_by_others(p, stat.S_IXOTH))
        ]
        args += [arg for path in private for arg in ("--tmpfs", str(path))]
        # the action's own code, and the Python that runs hatchway actions, stay visible (read-only)
        # even where they live under /tmp or the home (a checkout and its venv in /tmp, say)
        hidden = [Path("/tmp"), Path("/dev/shm"), *private]  # noqa: S108
        extra = [Path(p) for p in self.python.pythonpath]
        for source in visible_paths(spec, cwd, data_dir, hidden, extra):
            if not any(_within(str(source), p) for p in self.private):
                args += ["--ro-bind", str(source), str(source)]
        if not is_other_user or reachable_by_others(self.package, stat.S_IXOTH):
            runtime = self.package / "runtime"
            args += ["--tmpfs", str(self.package), "--ro-bind", str(runtime), str(runtime)]
            args += ["--ro-bind", str(self.package / "__init__.py"), str(self.package / "__init__.py")]
        args += ["--bind", str(data_dir), str(data_dir), "--chdir", str(cwd), "--cap-drop", "ALL"]
        if not allows_network(spec):
            args.append("--unshare-net")
        return args

    # -- the gateway's life --------------------------------------------------------------------

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
                try:
                    children = [c for c in stale.iterdir() if c.is_dir()]
                except OSError:
                    continue  # another gateway starting on this host removed it first
                for child in children:
                    Confinement([], [child]).release()
                with contextlib.suppress(OSError):
                    stale.rmdir()

    def close(self) -> None:
        for fd, _, _ in self._static:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._static = []
        if self.uids is not None:
            self.uids.close()


def secure_home(home: Path) -> None:
    """Make the gateway's home private to its user (0700) before any action runs."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = home.stat()
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
        home.chmod(0o700)


CGROUP_PREFIX = "hwsandbox"


def cgroup_owner_name() -> str:
    """``hwsandbox-<pid>-<start time>``: tells this gateway's cgroups from those of a dead one."""
    return f"{CGROUP_PREFIX}-{os.getpid()}-{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return "0"
    return stat_line[stat_line.rfind(b")") + 2 :].split()[19].decode()


def _alive(pid: int, started: str | None) -> bool:
    """Whether ``pid`` runs (and, when ``started`` is known, is still the process that started then)."""
    current = _start_time(pid)
    return current != "0" and (started is None or current == started)


_bwrap_checked: dict[int | None, bool] = {}


def bwrap_works(uid: int | None = None) -> bool:
    """bubblewrap is installed and can create its namespaces here (as ``uid``, if given; checked once)."""
    if uid not in _bwrap_checked:
        binary = shutil.which("bwrap")
        _bwrap_checked[uid] = False
        if binary:
            probe = [binary, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net", "true"]

            def start() -> subprocess.Popen[bytes]:
                return subprocess.Popen(probe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

            with contextlib.suppress(OSError, subprocess.SubprocessError):
                # (no --die-with-parent: its parent is the thread that started it, gone at once)
                proc = start() if uid is None else start_confined(start, uid=uid, gid=uid)
                _bwrap_checked[uid] = proc.wait(timeout=10) == 0
    return _bwrap_checked[uid]
