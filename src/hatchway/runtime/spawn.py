"""Run a command to its end under a deadline: the one process loop of hatchway.

Standard library only, because the same loop runs on the gateway's host (the process executor)
and inside action containers (the Lambda/ECS runtime adapter). The command gets its own session
and process group; one thread waits on both pipes and a pidfd with ``selectors``, hands output to
a callback as it arrives, keeps the deadline and notices a cancel. At the deadline or on cancel
the whole group gets SIGTERM and, after the grace period, SIGKILL - in the background when a
:class:`ProcessReaper` is given (so the caller can answer at once), else before returning. When
the main process exits, whatever it left running in its group is killed.

Orphans: a process that outlives its parent is normally re-parented to PID 1, which in a
container (or this gateway's own sandbox) may reap it late or never. :func:`enable_subreaper`
makes this process their new parent instead, and :func:`reap_orphans` collects those that are
not a :class:`subprocess.Popen` of ours, so no zombie outlives a run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: how long output is awaited after the main process exited (a child may still hold the pipes)
DRAIN_SECONDS = 0.05
_READ = 65536


Done = Callable[[], None] | None
#: starts a process: ``launch(argv, popen_kwargs)``; it may change the keyword arguments (a sandbox
#: starts the action from a restricted thread, or holds it at a barrier until it is placed)
Launch = Callable[[list[str], dict[str, Any]], "subprocess.Popen[bytes]"]
_tracked: set[int] = set()
_tracked_lock = threading.Lock()
#: spawns between fork and their pid joining ``_tracked``; their fresh children must not be reaped
#: as orphans (their exit status would be lost), so session leaders wait for a later round then
_starting = 0
PR_SET_CHILD_SUBREAPER = 36


def enable_subreaper() -> bool:
    """Become the parent of orphaned descendants (Linux); True if it worked."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return False


def _children(me: int) -> list[str] | None:
    """This process's children as the kernel lists them per thread; None where it does not."""
    try:
        tasks = os.listdir(f"/proc/{me}/task")
    except OSError:  # pragma: no cover - no procfs
        return None
    if not os.access(f"/proc/{me}/task/{me}/children", os.R_OK):
        return None  # a kernel without CONFIG_PROC_CHILDREN
    found: list[str] = []
    for tid in tasks:
        with contextlib.suppress(OSError), open(f"/proc/{me}/task/{tid}/children") as handle:  # a thread may end
            found.extend(handle.read().split())
    return found


def orphan_zombies() -> set[int]:
    """Exited children of this process that no Popen of ours is waiting for."""
    me = os.getpid()
    entries = _children(me)
    if entries is None:
        try:
            entries = os.listdir("/proc")
        except OSError:  # pragma: no cover - no procfs
            return set()
    found = set()
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        with _tracked_lock:
            if pid in _tracked:
                continue
            is_starting = _starting > 0
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 4 and fields[0] == b"Z" and int(fields[1]) == me:
            if is_starting and int(fields[3]) == pid:
                continue  # perhaps a command that exited before spawn() tracked it (each leads a session)
            found.add(pid)
    return found


def reap_orphans(only: set[int] | None = None) -> int:
    """Reap exited children that no Popen of ours is waiting for (of ``only``, if given); how many."""
    reaped = 0
    for pid in orphan_zombies():
        if only is not None and pid not in only:
            continue
        with contextlib.suppress(ChildProcessError, OSError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped += 1
    return reaped


@dataclass
class Spawned:
    """How a command ended."""

    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    start_error: str | None = None


def kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_gone(pgid: int, proc: subprocess.Popen[bytes]) -> bool:
    """True once the leader is reaped and no process of the group is left (orphans reaped)."""
    if proc.poll() is None:
        return False
    for attempt in range(2):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        if attempt == 0:
            reap_orphans()
    return False


class ProcessReaper:
    """Finishes kills in the background: SIGKILL to a group after its grace, then reaps.

    With ``reap_orphans_every`` (for a subreaper) it also collects, that often, descendants that
    were re-parented to this process and exited: an action killed at its deadline can leave
    children that were outside its process group (bubblewrap's, or a ``setsid`` grandchild's).
    """

    def __init__(self, reap_orphans_every: float | None = None) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[float, int, subprocess.Popen[bytes], Done]] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.reap_orphans_every = reap_orphans_every
        if reap_orphans_every is not None:
            self.start()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="hatchway-reaper", daemon=True)
                self._thread.start()

    def later(self, pgid: int, proc: subprocess.Popen[bytes], grace: float, on_done: Done = None) -> None:
        """SIGKILL the group after ``grace`` (sooner if it is gone by then), then call ``on_done``."""
        with self._lock:
            self._pending.append((time.monotonic() + grace, pgid, proc, on_done))
        self.start()
        self._wake.set()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _loop(self) -> None:
        last_orphan_reap = 0.0
        unclaimed: set[int] = set()
        while not self._stopped:
            now = time.monotonic()
            if self.reap_orphans_every is not None and now - last_orphan_reap >= self.reap_orphans_every:
                # only zombies that nobody waited for during a whole period: a subprocess.run()
                # elsewhere in this process reaps its own child at once and keeps its exit status
                last_orphan_reap = now
                zombies = orphan_zombies()
                reap_orphans(only=zombies & unclaimed)
                unclaimed = zombies
            with self._lock:
                due = [item for item in self._pending if item[0] <= now or group_gone(item[1], item[2])]
                self._pending = [item for item in self._pending if item not in due]
                wait = min((item[0] for item in self._pending), default=now + 60) - now
            for _, pgid, proc, on_done in due:
                if not group_gone(pgid, proc):  # once gone, the id may already name a new group
                    kill_group(pgid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
                if not group_gone(pgid, proc):
                    # killed but not yet reaped (orphans of ours): look again shortly
                    with self._lock:
                        self._pending.append((time.monotonic() + 0.05, pgid, proc, on_done))
                    continue
                with _tracked_lock:
                    _tracked.discard(proc.pid)
                _call(on_done)
            with self._lock:
                idle = not self._pending
            self._wake.wait(timeout=(self.reap_orphans_every or 60.0) if idle else max(0.01, min(wait, 0.05)))
            self._wake.clear()

    def flush(self) -> None:
        """Kill everything pending now (shutdown)."""
        with self._lock:
            pending, self._pending = self._pending, []
        for _, pgid, proc, on_done in pending:
            _finish(pgid, proc, 0.0, None, on_done)

    def stop(self) -> None:
        self.flush()
        self._stopped = True
        self._wake.set()


class Janitor:
    """Runs clean-up tasks in order on a background thread, so that nobody waits for them."""

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def later(self, task: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="hatchway-janitor", daemon=True)
                self._thread.start()
        self._tasks.put(task)

    def _loop(self) -> None:
        while (task := self._tasks.get()) is not None:
            _call(task)

    def close(self, timeout: float = 30.0) -> None:
        """Finish the tasks queued so far."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._tasks.put(None)
            thread.join(timeout)


def spawn(
    argv: list[str],
    *,
    cwd: str | os.PathLike[str] | None,
    env: dict[str, str],
    seconds: float,
    on_output: Callable[[str, bytes], None],
    is_cancelled: Callable[[], bool] = lambda: False,
    on_tick: Callable[[], None] | None = None,
    kill_grace: float = 5.0,
    reaper: ProcessReaper | None = None,
    on_start: Callable[[int], None] | None = None,
    on_finished: Done = None,
    launch: Launch | None = None,
) -> Spawned:
    """Run ``argv`` for at most ``seconds``, streaming its output to ``on_output(stream, chunk)``.

    ``on_finished`` is called once every process of the command's group is gone - before this
    returns, or later from the reaper after a deadline or cancel. ``launch`` starts the process
    (default: :class:`subprocess.Popen`).
    """
    global _starting
    with _tracked_lock:
        _starting += 1
    try:
        options: dict[str, Any] = {
            "stdin": subprocess.DEVNULL,
            "stdout": subprocess.PIPE,
            "stderr": subprocess.PIPE,
            "cwd": cwd,
            "env": env,
            "start_new_session": True,
            "close_fds": True,
        }
        proc = launch(argv, options) if launch is not None else subprocess.Popen(argv, **options)
        with _tracked_lock:
            _tracked.add(proc.pid)
    except OSError as exc:
        _call(on_finished)
        is_cwd = cwd is not None and exc.filename is not None and os.fsdecode(exc.filename) == os.fspath(cwd)
        if isinstance(exc, FileNotFoundError | NotADirectoryError) and is_cwd:
            return Spawned(exit_code=127, start_error="the working directory does not exist")
        if isinstance(exc, PermissionError) and is_cwd:
            return Spawned(exit_code=126, start_error="the working directory cannot be entered")
        if isinstance(exc, FileNotFoundError):
            return Spawned(exit_code=127, start_error=f"{argv[0]!r} was not found")
        if isinstance(exc, PermissionError):
            return Spawned(exit_code=126, start_error=f"{argv[0]!r} is not executable")
        if isinstance(exc, NotADirectoryError):
            return Spawned(exit_code=127, start_error="the working directory does not exist")
        return Spawned(exit_code=127, start_error=exc.strerror or type(exc).__name__)
    finally:
        with _tracked_lock:
            _starting -= 1
    try:
        if on_start is not None:
            on_start(proc.pid)
        return _collect(proc, seconds, on_output, is_cancelled, on_tick, kill_grace, reaper, on_finished)
    except BaseException:
        # a callback failed (the store refused the output): the command must not outlive its loop
        if group_gone(proc.pid, proc):
            _call(on_finished)
        else:
            _terminate(proc.pid, proc, 0.0, None, on_finished)
        raise
    finally:
        if proc.returncode is not None:
            with _tracked_lock:
                _tracked.discard(proc.pid)


def _collect(
    proc: subprocess.Popen[bytes],
    seconds: float,
    on_output: Callable[[str, bytes], None],
    is_cancelled: Callable[[], bool],
    on_tick: Callable[[], None] | None,
    kill_grace: float,
    reaper: ProcessReaper | None,
    on_finished: Done,
) -> Spawned:
    if proc.stdout is None or proc.stderr is None:  # pragma: no cover - Popen was given PIPE
        raise RuntimeError("the command's pipes are missing")
    deadline = time.monotonic() + max(0.0, seconds)
    pgid = proc.pid
    selector = selectors.DefaultSelector()
    streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    for fd, stream in streams.items():
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ, stream)
    # a launch may return a stand-in for a process that is not our child (a fork of a warm server,
    # which reaps it): it hands over a pidfd opened while the process was sure to exist
    open_pidfd = getattr(proc, "open_pidfd", None)
    pidfd = open_pidfd() if open_pidfd is not None else os.pidfd_open(proc.pid)
    selector.register(pidfd, selectors.EVENT_READ, "exit")
    open_streams = set(streams)
    exited_at: float | None = None
    result = Spawned()
    try:
        while open_streams or exited_at is None:
            now = time.monotonic()
            if is_cancelled() or now >= deadline:
                result.cancelled = is_cancelled()
                result.timed_out = not result.cancelled
                _terminate(pgid, proc, kill_grace, reaper, on_finished)
                break
            if exited_at is not None and now - exited_at > DRAIN_SECONDS:
                # the main process is gone but something it started still holds the pipes
                kill_group(pgid, signal.SIGKILL)
                _drain(open_streams, streams, on_output)
                break
            timeout = min(deadline - now, 0.1, DRAIN_SECONDS if exited_at is not None else 0.1)
            for key, _ in selector.select(max(timeout, 0.0)):
                if key.data == "exit":
                    exited_at = time.monotonic()
                    selector.unregister(pidfd)
                    continue
                try:
                    chunk = os.read(key.fd, _READ)
                except BlockingIOError:
                    continue
                if chunk:
                    on_output(key.data, chunk)
                else:
                    selector.unregister(key.fd)
                    open_streams.discard(key.fd)
            if on_tick is not None:
                on_tick()
    finally:
        selector.close()
        os.close(pidfd)
        proc.stdout.close()
        proc.stderr.close()
    if result.timed_out or result.cancelled:
        return result
    returncode = proc.wait()
    if group_gone(pgid, proc):
        _call(on_finished)
    else:
        # anything the command left behind in its group goes with it
        kill_group(pgid, signal.SIGKILL)
        _finish(pgid, proc, 0.0, reaper, on_finished)
    if returncode < 0:
        result.signal = -returncode
        result.exit_code = 128 - returncode
    else:
        result.exit_code = returncode
    return result


def _drain(open_streams: set[int], streams: dict[int, str], on_output: Callable[[str, bytes], None]) -> None:
    for fd in list(open_streams):
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(fd, _READ):
                on_output(streams[fd], chunk)


def _terminate(
    pgid: int, proc: subprocess.Popen[bytes], grace: float, reaper: ProcessReaper | None, on_finished: Done
) -> None:
    """SIGTERM the group now; SIGKILL what is left after the grace (in the background with a reaper)."""
    kill_group(pgid, signal.SIGTERM)
    if grace <= 0:
        kill_group(pgid, signal.SIGKILL)
    _finish(pgid, proc, grace, reaper, on_finished)


def _finish(
    pgid: int, proc: subprocess.Popen[bytes], grace: float, reaper: ProcessReaper | None, on_finished: Done
) -> None:
    """SIGKILL the group after ``grace`` unless it is gone by then; reap everything of it."""
    if reaper is not None:
        reaper.later(pgid, proc, grace, on_finished)
        return
    deadline = time.monotonic() + grace
    while not group_gone(pgid, proc) and time.monotonic() < deadline:
        time.sleep(0.01)
    kill_group(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    settle = time.monotonic() + 2.0
    while not group_gone(pgid, proc) and time.monotonic() < settle:
        time.sleep(0.01)
    with _tracked_lock:
        _tracked.discard(proc.pid)
    _call(on_finished)


def _call(callback: Done) -> None:
    if callback is not None:
        try:
            callback()
        except Exception:  # a cleanup hook must not break the process loop
            logging.getLogger("hatchway.spawn").exception("cleanup after an action failed")
