"""Warm Python servers: sync calls of an action that opted in, answered by a fork of a process
that imported the action once.

An action whose ``action.json`` says ``"warm": true`` and whose program ends in
``hatchway.runtime.main()`` is started once per (project, environment, action, digest) as a
*server*: through the same confinement as a cold attempt (sandbox level, rlimits, cgroups with the
action's limits, a uid of its own from the pool), with the environment a cold attempt gets minus
what belongs to one call, plus ``HATCHWAY_WARM_FD`` (:mod:`hatchway.runtime.warm` is its side).
Each sync call then gets a private workspace *inside* the server's directory (the only place its
sandbox can write), its own pipes, and a fork of the server as its process: in a process group of
its own, moved by the gateway into cgroups of its own (the call's memory and process limits, its
OOM report, the kill of whatever escaped its group) before it may start. The child is driven by the
same process loop as a cold action (:func:`hatchway.runtime.spawn.spawn`): stdout, stderr, output
caps, the deadline, cancel and the kill of the whole tree are those of a cold call; only its exit
status arrives from the server, which is its parent. The fork is made ahead of its call - a
*spare*, forked, reported and placed in its cgroups once the previous call has ended - so what a
call waits for is one message to a process that exists: the fork and, above all, the cgroup
migration (a v1 migration waits for an RCU grace period: 1-11 ms here) are off its path.

A server is never shared: its key is the project, environment, action name and digest, so a new
version gets a new server (whose start stops the older versions' servers; a call pinned to an old
version then starts one of its own again, and versions called side by side do not evict each
other). It is replaced after ``HATCHWAY_WARM_MAX_CALLS`` calls, stopped after
``HATCHWAY_WARM_IDLE_SECONDS`` without one, when it dies, and when the gateway stops; at most
``HATCHWAY_WARM_MAX_SERVERS`` live at once (the least recently used idle one makes room). Secrets
only ever reach a call's ``config.json``, never a server's environment. A server that cannot
start or breaks is logged once and its calls run cold.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hatchway.config import ExecutorSettings
from hatchway.domain.attempts import Invocation, scrub_paths
from hatchway.domain.spec import ActionSpec
from hatchway.executors.journal import Journal, boot_ticks
from hatchway.executors.sandbox import Cgroups, Confinement, Sandbox
from hatchway.runtime.spawn import Janitor, kill_group
from hatchway.runtime.warm import MAX_MESSAGE, WARM_FD

log = logging.getLogger("hatchway.warm")

#: a key whose server could not start is tried again after this long (its calls run cold meanwhile)
RETRY_START_SECONDS = 60.0
#: how long a call's fork may take to say it exists
FORK_SECONDS = 5.0
_CREDENTIALS = struct.calcsize("3i")

Key = tuple[str, str, str, str]


@dataclass(frozen=True)
class WarmLimits:
    """How many warm servers, for how long, for how many calls (the ``HATCHWAY_WARM_*`` settings)."""

    max_servers: int
    max_calls: int
    idle_seconds: float
    start_seconds: float

    @classmethod
    def of(cls, executors: ExecutorSettings | None = None) -> WarmLimits:
        """The limits ``executors`` set (by default, the defaults of the settings)."""
        executors = executors or ExecutorSettings()
        return cls(
            executors.warm_max_servers,
            executors.warm_max_calls,
            executors.warm_idle_seconds,
            executors.warm_start_seconds,
        )


def is_warm_call(invocation: Invocation) -> bool:
    """Whether the action opted in and this is a sync call (runs always start cold)."""
    return invocation.spec.warm is True and invocation.invoked != "run"


def key_of(invocation: Invocation) -> Key:
    return (invocation.project_id, invocation.environment, invocation.action_name, invocation.digest)


class WarmBroken(Exception):
    """The server did not take the call: it runs cold."""


class WarmChild(subprocess.Popen[bytes]):
    """A call's process as :func:`~hatchway.runtime.spawn.spawn` sees it: a fork of the warm server,
    not a child of the gateway, so its exit status comes from the server over the call's socket and
    its exit is watched through a pidfd opened while it still waited for its call."""

    def __init__(self, pid: int, pidfd: int, call: socket.socket, stdout: int, stderr: int) -> None:
        # Popen.__init__ would start a process; this one exists already
        self.args: Any = []
        self.pid = pid
        self.returncode: Any = None
        self.stdin = None
        self.stdout = open(stdout, "rb", buffering=0)  # noqa: SIM115 - closed by the process loop
        self.stderr = open(stderr, "rb", buffering=0)  # noqa: SIM115
        self._child_created = False  # Popen.__del__ leaves it alone
        self._pidfd = pidfd
        self._call = call

    def open_pidfd(self) -> int:
        """A pidfd of the call's process (the process loop's; it may be reaped by the server by now)."""
        return os.dup(self._pidfd)

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read(0.0)
        return self.returncode  # type: ignore[no-any-return]

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            self._read(left if left is not None else 1.0)
        return self.returncode  # type: ignore[no-any-return]

    def _read(self, timeout: float) -> None:
        if self._call.fileno() < 0:
            return
        ready, _, _ = select.select([self._call], [], [], timeout)
        if not ready:
            return
        try:
            message = self._call.recv(64)
        except OSError:
            message = b""
        if message.startswith(b"exit "):
            self.returncode = int(message[5:])
        elif not message:
            # the server went without a word: once the call's process is gone too, it was killed
            gone, _, _ = select.select([self._pidfd], [], [], 0)
            if not gone:
                time.sleep(min(timeout, 0.01))
                return
            self.returncode = -signal.SIGKILL
        self._close()

    def _close(self) -> None:
        if self.returncode is not None:
            self._call.close()
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = -1

    def __del__(self) -> None:
        self._call.close()
        if self._pidfd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)


@dataclass
class Spare:
    """A fork of the server waiting for a call, already in the call's cgroups."""

    pid: int
    pidfd: int
    call: socket.socket
    confinement: Confinement

    def start(self, cwd: Path, env: dict[str, str]) -> WarmChild:
        """Hand the fork its call (directory, environment, stdout and stderr): it runs from here."""
        message = json.dumps({"cwd": str(cwd), "env": env}).encode()
        if len(message) > MAX_MESSAGE:
            raise WarmBroken("the call's environment is too large for a warm server")
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            socket.send_fds(self.call, [message], [out_w, err_w])
            # it says it took the call: a spare killed with its server (or killed while it waited)
            # says nothing, or its server reports its exit, and the call runs cold instead
            self.call.settimeout(FORK_SECONDS)
            said = self.call.recv(16)
            self.call.settimeout(None)
            if said != b"go":
                raise OSError("it ended before it took the call")
        except OSError as exc:
            for fd in (out_r, err_r):
                os.close(fd)
            raise WarmBroken(f"the spare fork is gone ({exc})") from exc
        finally:
            os.close(out_w)
            os.close(err_w)
        return WarmChild(self.pid, self.pidfd, self.call, out_r, err_r)

    def discard(self) -> None:
        """End the unused fork (it would end by itself once its socket closes) and its cgroups."""
        kill_group(self.pid, signal.SIGKILL)
        self.call.close()
        with contextlib.suppress(OSError):
            os.close(self.pidfd)
        self.confinement.release()


class WarmServer:
    """One action's warm server: its process, its directory, its uid, its spare fork, its calls."""

    def __init__(self, key: Key, directory: Path, version: int = 0) -> None:
        self.key = key
        self.directory = directory
        self.version = version
        self.proc: subprocess.Popen[bytes] | None = None
        self.confinement: Confinement | None = None
        self.control: socket.socket | None = None
        self.uid: int | None = None
        self.spec: ActionSpec | None = None
        self.cgroups: Cgroups | None = None
        self.ready = threading.Event()
        self.is_usable = False
        self.busy = 0
        self.calls = 0
        self.is_retiring = False
        self.last_used = time.monotonic()
        self._send = threading.Lock()
        self._spares: list[Spare] = []
        self._forks = 0

    def take(self) -> Spare:
        """A spare fork for a call: the one made ahead, else a new one; WarmBroken if the server fails."""
        with self._send:
            if self._spares:
                return self._spares.pop()
        return self._fork()

    def refill(self) -> None:
        """Make the next call's spare ahead of it (after a call, off the answer's path)."""
        with self._send:
            if self._spares or self.control is None:
                return
        with contextlib.suppress(WarmBroken):
            spare = self._fork()
            with self._send:
                if self.control is not None and not self._spares:
                    self._spares.append(spare)
                    return
            spare.discard()

    def _fork(self) -> Spare:
        with self._send:
            control = self.control
            if control is None or self.spec is None:
                raise WarmBroken("the server is gone")
            self._forks += 1
            name = f"{self.directory.name}-{self._forks}"
            try:
                control.sendall(b"spare")
                control.settimeout(FORK_SECONDS)
                message, fds, _, _ = socket.recv_fds(control, 16, 1)
                control.settimeout(None)
            except OSError as exc:
                raise WarmBroken(f"the server did not fork ({exc})") from exc
        if message != b"spare" or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise WarmBroken("the server did not fork")
        call = socket.socket(fileno=fds[0])
        confinement = Confinement([], is_confined=True)
        try:
            call.settimeout(FORK_SECONDS)
            data, ancillary, _, _ = call.recvmsg(16, socket.CMSG_SPACE(_CREDENTIALS))
            call.settimeout(None)
            pid = next(
                (
                    struct.unpack("3i", cdata[:_CREDENTIALS])[0]
                    for level, kind, cdata in ancillary
                    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
                ),
                0,
            )
            if data != b"pid" or pid <= 0:
                raise WarmBroken("the server's fork did not report")
            pidfd = os.pidfd_open(pid)
            if self.cgroups is not None:
                # the call's own limits and OOM report, as a cold attempt's (moved in before it may run)
                confinement.cgroups = self.cgroups.create(name, self.spec)
                confinement.has_pids_cgroup = any((p / "pids.max").exists() for p in confinement.cgroups)
                for path in confinement.cgroups:
                    with open(path / "cgroup.procs", "w") as procs:
                        procs.write(str(pid))
        except (OSError, WarmBroken) as exc:
            call.close()  # the fork reads end-of-file and ends
            confinement.release()
            raise exc if isinstance(exc, WarmBroken) else WarmBroken(str(exc)) from exc
        return Spare(pid, pidfd, call, confinement)

    def stop(self) -> None:
        """End the server's process and its spare (calls in flight are their own process loops' to end)."""
        with self._send:
            spares, self._spares = self._spares, []
            control, self.control = self.control, None
        for spare in spares:
            spare.discard()
        if control is not None:
            control.close()
        if self.proc is not None:
            kill_group(self.proc.pid, signal.SIGKILL)
            if self.confinement is not None:
                self.confinement.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)


class WarmPool:
    """The warm servers of one process executor (see the module's docstring)."""

    def __init__(
        self,
        limits: WarmLimits,
        sandbox: Sandbox,
        work_dir: Path,
        journal: Journal,
        starter: Callable[[WarmServer, Invocation], None],
    ) -> None:
        self.limits = limits
        self.sandbox = sandbox
        self.work_dir = work_dir
        self.journal = journal
        self._starter = starter
        self._servers: OrderedDict[Key, WarmServer] = OrderedDict()
        self._failed: dict[Key, float] = {}
        #: calls that warm servers took (for tests and the bench: a call that fell back is not one)
        self.served = 0
        self._lock = threading.Lock()
        self._closed = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        #: makes each server's next spare, one at a time, off the calls' paths
        self._spares = Janitor()

    @property
    def size(self) -> int:
        with self._lock:
            return len(self._servers)

    def lease(self, invocation: Invocation) -> WarmServer | None:
        """A ready server for this call (started if needed), counted busy; None: run it cold."""
        key = key_of(invocation)
        stale: list[WarmServer] = []
        with self._lock:
            if self._closed or self.limits.max_servers < 1:
                return None
            if self._failed.get(key, 0.0) > time.monotonic():
                return None
            self._failed.pop(key, None)
            server = self._servers.get(key)
            is_new = server is None
            if server is None:
                # a newer version's first call retires the servers of older ones (once: a call pinned
                # to an old version later starts its own, which then lives as long as it is used)
                for other in list(self._servers.values()):
                    if other.key[:3] == key[:3] and other.version < invocation.version:
                        stale += self._retire(other)
                if len(self._servers) >= self.limits.max_servers:
                    idle = next((s for s in self._servers.values() if s.busy == 0 and s.ready.is_set()), None)
                    if idle is None:
                        self._stop_later(stale)
                        return None  # every server is busy: no room, this call runs cold
                    stale += self._retire(idle)
                server = WarmServer(key, self.work_dir / f"warm-{uuid.uuid4().hex[:16]}", invocation.version)
                self._servers[key] = server
            self._servers.move_to_end(key)
            server.busy += 1
            server.last_used = time.monotonic()
        self._stop_later(stale)
        if is_new:
            self._start(server, invocation)
        else:
            server.ready.wait(min(self.limits.start_seconds, max(0.0, invocation.seconds_left / 2)))
        if not server.is_usable:
            self.release(server)
            return None
        return server

    def release(self, server: WarmServer, is_broken: bool = False) -> None:
        """A call of ``server`` ended; a broken, worn-out or retired server goes once its calls have."""
        with self._lock:
            server.busy -= 1
            if server.is_usable and not is_broken:
                server.calls += 1
                self.served += 1
            server.last_used = time.monotonic()
            worn = is_broken or server.calls >= self.limits.max_calls or not server.is_usable
            stale = self._retire(server) if worn else []
            if server.is_retiring and server.busy == 0 and server not in stale:
                stale.append(server)
            # one that broke before it answered anything would break again: cold for a while
            is_hopeless = is_broken and server.calls == 0
            if is_hopeless:
                self._failed[server.key] = time.monotonic() + RETRY_START_SECONDS
        if is_hopeless:
            log.warning(
                "the warm server of action %s broke before its first call: its sync calls run cold for %.0f s",
                server.key[2],
                RETRY_START_SECONDS,
            )
        elif is_broken:
            log.warning("the warm server of action %s broke: a new one starts for its next call", server.key[2])
        elif not worn and not server.is_retiring:
            self._spares.later(server.refill)  # (a thread started per call costs the call its start-up)
        self._stop_later(stale)

    def _retire(self, server: WarmServer) -> list[WarmServer]:
        """Take ``server`` out of the pool (lock held); the servers to stop now."""
        if self._servers.get(server.key) is server:
            del self._servers[server.key]
        server.is_retiring = True
        return [server] if server.busy == 0 else []

    def _start(self, server: WarmServer, invocation: Invocation) -> None:
        try:
            began = time.monotonic()
            self._starter(server, invocation)
            server.is_usable = True
            self._ensure_reaper()
            log.info(
                "a warm server of action %s (version %s) is ready after %.0f ms",
                server.key[2],
                invocation.version,
                (time.monotonic() - began) * 1000,
            )
        except (OSError, WarmBroken) as exc:
            with self._lock:
                self._failed[server.key] = time.monotonic() + RETRY_START_SECONDS
                if self._servers.get(server.key) is server:
                    del self._servers[server.key]
            log.warning(
                "action %s could not start a warm server (%s): its sync calls run cold for %.0f s",
                server.key[2],
                scrub_paths(str(exc)),  # an OSError names the gateway's own folders
                RETRY_START_SECONDS,
            )
            self.stop(server)
        finally:
            server.ready.set()

    def stop(self, server: WarmServer) -> None:
        """Stop a server's process and remove what it had: directory, cgroups, uid, journal entry."""
        server.stop()
        confinement, server.confinement = server.confinement, None
        is_gone = confinement.release() if confinement is not None else True
        shutil.rmtree(server.directory, ignore_errors=True)
        uids = self.sandbox.uids
        if uids is not None and server.uid is not None:
            uids.give(server.uid, is_clean=is_gone and confinement is not None and confinement.has_pids_cgroup)
            server.uid = None
        self.journal.ended(server.directory.name)

    def _stop_later(self, servers: list[WarmServer]) -> None:
        for server in servers:
            threading.Thread(target=self.stop, args=(server,), name="hatchway-warm-stop", daemon=True).start()

    def _ensure_reaper(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._expire, name="hatchway-warm", daemon=True)
                self._thread.start()

    def _expire(self) -> None:
        """Stop servers idle too long, and those whose process died (their next call would break)."""
        period = max(0.05, min(self.limits.idle_seconds / 4, 5.0))
        while not self._wake.wait(period):
            now = time.monotonic()
            with self._lock:
                stale = []
                for server in list(self._servers.values()):
                    is_dead = server.proc is not None and server.proc.poll() is not None
                    if server.ready.is_set() and (is_dead or now - server.last_used > self.limits.idle_seconds):
                        stale += self._retire(server)
            for server in stale:
                self.stop(server)

    def close(self) -> None:
        """Stop every server (the gateway stops)."""
        with self._lock:
            self._closed = True
            servers = list(self._servers.values())
            self._servers.clear()
            thread, self._thread = self._thread, None
        self._wake.set()
        if thread is not None:
            thread.join(timeout=10)
        self._spares.close()
        for server in servers:
            server.ready.wait(self.limits.start_seconds)
            self.stop(server)


def start_server(
    server: WarmServer,
    spec: ActionSpec,
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    sandbox: Sandbox,
    journal: Journal,
    seconds: float,
) -> None:
    """Start ``server``'s process confined as a cold attempt would be, and wait for its ``ready``."""
    uids = sandbox.uids
    if uids is not None:
        server.uid = uids.take()
        if server.uid is None:
            raise WarmBroken("every uid of HATCHWAY_SANDBOX_UIDS is in use")
    directory = server.directory
    server.spec, server.cgroups = spec, sandbox.cgroups
    journal.began(directory.name)
    directory.mkdir(mode=0o711)  # the gateway's: the server's uid reaches its calls by name, lists nothing
    home = directory / "tmp"
    home.mkdir(mode=0o700)
    if server.uid is not None:
        os.chown(home, server.uid, server.uid)
    control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server.control = control
    env = {**env, "HOME": str(home), "TMPDIR": str(home), WARM_FD: str(theirs.fileno())}
    confinement = sandbox.confine(argv, spec, directory, cwd, directory.name, server.uid)
    server.confinement = confinement
    options: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
        "cwd": cwd,
        "env": env,
        "start_new_session": True,
        "close_fds": True,
        "pass_fds": (theirs.fileno(),),
    }
    spawned_after = boot_ticks()
    try:
        if confinement.is_confined:
            server.proc = confinement.launch(confinement.argv, options)
        else:
            server.proc = subprocess.Popen(confinement.argv, **options)  # noqa: S603 - an argv, no shell
    finally:
        theirs.close()
    journal.started(directory.name, server.proc.pid, spawned_after)
    control.settimeout(max(0.01, seconds))
    try:
        said = control.recv(16)
    except TimeoutError:
        raise WarmBroken(f"it did not say it was ready within {seconds:.1f} s") from None
    if said != b"ready":
        code = server.proc.poll()
        why = f"it exited with code {code}" if code is not None else "it closed its socket"
        raise WarmBroken(f"{why} before it was ready: does its program end in hatchway.runtime.main()?")
    control.settimeout(None)
    server.refill()  # the first call's spare
