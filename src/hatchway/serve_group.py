"""``hatchway serve --processes N``: several gateway processes on one port (``SO_REUSEPORT``) and one
home, started and watched by a parent (:class:`ServeGroup`); :func:`serve_member` is one of them."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hatchway import wiring
from hatchway.config import Settings
from hatchway.server import serve_services, start_home, startup_banner

log = logging.getLogger("hatchway.server")


def run_group(
    settings: Settings,
    host: str,
    port: int,
    load_examples: bool = False,
    examples_dir: Path | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """``hatchway serve`` with ``HATCHWAY_PROCESSES`` above 1 (the arguments of
    :func:`~hatchway.server.run_server`)."""
    ServeGroup(settings, host, port, tls_cert, tls_key).run(load_examples, examples_dir)


@dataclass(frozen=True)
class _Orders:
    """What a serve process of a group is told, pickled on its stdin (never in its command line:
    the settings may hold the bootstrap token)."""

    settings: Settings
    host: str
    port: int
    tls_cert: str | None
    tls_key: str | None
    index: int
    parent: int
    socket_fd: int
    ready_fd: int
    is_restart: bool
    #: where the group's processes share their metrics (None: no prometheus page)
    metrics_dir: Path | None


@dataclass
class _Member:
    """One serve process of a group, as its parent sees it."""

    index: int
    proc: Any = None  # subprocess.Popen
    ready_fd: int | None = None  # the read end of its readiness pipe, until it said it is ready
    started: float = 0.0
    failures: int = 0  # quick deaths in a row, for the restart backoff
    restart_at: float | None = None


class ServeGroup:
    """``hatchway serve --processes N``: a parent that does the once-per-home start-up work, then
    starts N serve processes on one port and watches them.

    The parent binds N listening sockets with ``SO_REUSEPORT`` (the kernel spreads connections over
    them) and hands one to each process; it keeps them open, so connections that arrive while a
    process is replaced wait in its socket's backlog for the next one instead of being refused.
    Each process has its share of the worker pool (``HATCHWAY_WORKERS`` split N ways), the
    group one sync-call limit (:class:`~hatchway.services.slots.SharedSlots`). Processes on one
    SQLite home wake each other's workers through the store's doorbell.

    SIGINT and SIGTERM are passed on as SIGTERM (each process shuts down gracefully: its running
    attempts finish within the shutdown grace or go back to the queue); a process that dies
    otherwise is started again after a backoff; if one cannot start at all, the group stops and
    ``hatchway serve`` exits with status 1. Processes run in their own process groups (a terminal's
    Ctrl-C reaches the parent alone, which passes it on once) and end if the parent dies.
    """

    #: longest pause before a process that keeps dying is started again
    MAX_BACKOFF_SECONDS = 30.0
    #: a process that lived this long before dying is restarted without delay growing
    STABLE_SECONDS = 60.0

    def __init__(self, settings: Settings, host: str, port: int, tls_cert: str | None, tls_key: str | None) -> None:
        self.settings = settings
        self.host, self.port = host, port
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self.count = settings.server.processes
        self.members = [_Member(index) for index in range(self.count)]
        self.sockets: list[Any] = []
        self.metrics_dir: Path | None = None
        self._stop_signal: int | None = None

    def workers_of(self, index: int) -> int:
        """Process ``index``'s share of the worker pool."""
        share, extra = divmod(self.settings.runs.workers, self.count)
        return share + (1 if index < extra else 0)

    def member_settings(self, index: int) -> Settings:
        """Process ``index``'s settings: its share of the workers, and of each client address's
        authentication failure budget (kept in memory per process; a client's connections are
        spread over them all, so the gateway allows about the budget, never N times it)."""
        budget = -(-self.settings.server.auth_failure_budget // self.count)
        return self.settings.with_(workers=self.workers_of(index), auth_failure_budget=budget)

    def run(self, load_examples: bool, examples_dir: Path | None) -> None:
        import signal

        services, examples = start_home(self.settings, load_examples, examples_dir)
        try:
            banner = startup_banner(self.settings, services, self.host, self.port, self.tls_cert is not None, examples)
        finally:
            services.close()  # the parent runs nothing: its processes have services of their own
        try:
            self.metrics_dir = wiring.metrics_group_directory(self.settings)
        except OSError as err:
            raise SystemExit(f"error: cannot keep the processes' metrics in the home: {err.strerror or err}") from None
        try:
            for _ in range(self.count):
                self._listen()
        except OSError as err:  # taken since the command looked (not by a gateway with --processes)
            for sock in self.sockets:
                sock.close()
            if self.metrics_dir is not None:
                wiring.remove_metrics_group_directory(self.metrics_dir)
            raise SystemExit(f"error: cannot listen on {self.host}:{self.port}: {err.strerror or err}") from None
        wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_write)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to be woken (set_wakeup_fd) when one ends
        try:
            for member in self.members:
                self._start(member, is_restart=False)
            if self._wait_ready(wake_read):
                print(banner, flush=True)
                self._watch(wake_read)
        finally:
            self._stop_all()
            if self.metrics_dir is not None:
                wiring.remove_metrics_group_directory(self.metrics_dir)
            signal.set_wakeup_fd(-1)
            for sock in self.sockets:
                sock.close()
        if self._stop_signal is not None:
            # as a single process does (uvicorn re-raises the signal it caught): killed by it
            signal.signal(self._stop_signal, signal.SIG_DFL)
            os.kill(os.getpid(), self._stop_signal)
        raise SystemExit("error: a serve process could not start (its log lines are above)")

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum

    def _listen(self) -> None:
        import socket

        family, kind, proto, _, address = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        self.sockets.append(sock)  # closed with the others if a later one fails
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(2048)  # uvicorn's default backlog

    def _start(self, member: _Member, is_restart: bool) -> None:
        import pickle
        import subprocess
        import sys

        ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
        orders_read, orders_write = os.pipe2(os.O_CLOEXEC)
        sock = self.sockets[member.index]
        orders = _Orders(
            self.member_settings(member.index), self.host, self.port,
            self.tls_cert, self.tls_key, member.index, os.getpid(), sock.fileno(), ready_write, is_restart,
            self.metrics_dir,
        )  # fmt: skip
        # -P: the current directory is not put on sys.path (nothing there may pass for hatchway)
        command = [sys.executable, "-P", "-c", "from hatchway.serve_group import serve_member; serve_member()"]
        try:
            member.proc = subprocess.Popen(
                command, stdin=orders_read, pass_fds=(sock.fileno(), ready_write), process_group=0
            )
        finally:
            os.close(ready_write)
            os.close(orders_read)
        member.ready_fd, member.started, member.restart_at = ready_read, time.monotonic(), None
        with open(orders_write, "wb") as pipe:
            pipe.write(pickle.dumps(orders))

    def _wait_ready(self, wake_read: int) -> bool:
        """Wait until every process answers; False if one ended first or a signal came."""
        import select

        while self._stop_signal is None:
            waiting = [m.ready_fd for m in self.members if m.ready_fd is not None]
            if not waiting:
                return True
            readable, _, _ = select.select([wake_read, *waiting], [], [], 1.0)
            _drain(wake_read)
            for member in self.members:
                fd = member.ready_fd
                if fd is not None and fd in readable and not self._heard(member, fd):
                    log.error(
                        "a serve process could not start",
                        extra={"serve_process": member.index, "exit_code": member.proc.wait()},
                    )
                    return False
        return False

    @staticmethod
    def _heard(member: _Member, fd: int) -> bool:
        """Read a process's readiness pipe: True if it said it is ready (else it died before)."""
        said = os.read(fd, 1)
        os.close(fd)
        member.ready_fd = None
        return bool(said)

    def _watch(self, wake_read: int) -> None:
        """Until a signal: start again each process that dies, after a backoff."""
        import select

        while self._stop_signal is None:
            now = time.monotonic()
            for member in self.members:
                if member.restart_at is None and member.proc.poll() is not None:
                    self._schedule_restart(member, now)
                if member.restart_at is not None and member.restart_at <= now:
                    self._start(member, is_restart=True)
            due = [m.restart_at for m in self.members if m.restart_at is not None]
            timeout = max(0.0, min(due) - now) if due else 5.0
            waiting = [m.ready_fd for m in self.members if m.ready_fd is not None]
            readable, _, _ = select.select([wake_read, *waiting], [], [], timeout)
            _drain(wake_read)
            for member in self.members:
                if member.ready_fd is not None and member.ready_fd in readable and self._heard(member, member.ready_fd):
                    log.warning("a serve process was started again", extra={"serve_process": member.index})

    def _schedule_restart(self, member: _Member, now: float) -> None:
        if member.ready_fd is not None:  # it died before it was ready
            os.close(member.ready_fd)
            member.ready_fd = None
        lived = now - member.started
        member.failures = 0 if lived >= self.STABLE_SECONDS else member.failures + 1
        delay = 0.0 if member.failures == 0 else min(self.MAX_BACKOFF_SECONDS, 0.5 * 2 ** (member.failures - 1))
        member.restart_at = now + delay
        log.warning(
            "a serve process ended unexpectedly; starting another",
            extra={"serve_process": member.index, "exit_code": member.proc.returncode, "delay_seconds": delay},
        )

    def _stop_all(self) -> None:
        """SIGTERM to every process, and wait for their graceful shutdown (SIGKILL after it)."""
        import signal
        import subprocess

        alive = [m.proc for m in self.members if m.proc is not None and m.proc.poll() is None]
        for proc in alive:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.runs.shutdown_grace_seconds + 15
        for proc in alive:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("a serve process did not stop in time; killed", extra={"pid": proc.pid})
                proc.kill()
                proc.wait()
        for member in self.members:
            if member.ready_fd is not None:
                os.close(member.ready_fd)
                member.ready_fd = None


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass


def serve_member() -> None:
    """One serve process of a :class:`ServeGroup` (``python -c``): its orders come pickled on stdin."""
    import pickle
    import sys

    orders: _Orders = pickle.load(sys.stdin.buffer)  # noqa: S301 - written by the parent, on a pipe of its own
    _end_with_parent(orders.parent)
    try:
        _serve_member(orders)
    except Exception as exc:  # one line, as the command line says it (no traceback on stderr)
        from hatchway.errors import HatchwayError

        why = exc.message if isinstance(exc, HatchwayError) else f"{type(exc).__name__}: {exc}"
        sys.stderr.write(f"error: serve process {orders.index}: {why}\n")
        raise SystemExit(1) from None


def _serve_member(orders: _Orders) -> None:
    import socket

    settings = orders.settings
    wiring.configure_observability(settings)
    tag = _ProcessTag(orders.index)
    for handler in logging.getLogger("hatchway").handlers:
        handler.addFilter(tag)
    group = None if orders.metrics_dir is None else (orders.metrics_dir, orders.index)
    services = wiring.build_services(settings, pool=settings.runs.workers > 0, metrics_group=group)
    wiring.bootstrap(services)  # the parent made the key and token; this reads them
    if orders.is_restart:  # what the process it replaces left running (the journals say whose)
        recovered = wiring.tidy_at_rest(services)
        if recovered:
            log.warning("stopped actions left running by the process replaced", extra={"count": recovered})
    sock = socket.socket(fileno=orders.socket_fd)
    sock.set_inheritable(False)  # the actions this process starts get no listening socket

    def ready() -> None:
        os.write(orders.ready_fd, b"1")
        os.close(orders.ready_fd)

    serve_services(
        settings, services, orders.host, orders.port, orders.tls_cert, orders.tls_key, ready, [sock],
        on_stop=lambda: wiring.close_metrics(services),
    )  # fmt: skip


class _ProcessTag(logging.Filter):
    """Names the serve process of a group in each of its log lines (``serve_process``)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.serve_process = self.index
        return True


def _end_with_parent(parent: int) -> None:
    """SIGTERM this process when its parent dies (Linux), so a killed group leaves none behind."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)
