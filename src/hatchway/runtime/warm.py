"""The warm side of :func:`hatchway.runtime.main`: the action's own process as a fork server.

Standard library only (this package is copied into images whole). The gateway starts an action
that opted in (``"warm": true``) the way it starts a cold one - same sandbox level, limits and uid,
the same environment without the per-call variables - plus ``HATCHWAY_WARM_FD``, an inherited
``SOCK_SEQPACKET`` socket. ``hw.main()`` sees it after the action module imported everything and
registered its handlers, says ``ready`` and serves: per call the gateway sends one message (the
call's working directory and environment as JSON) with three descriptors - the call's own socket
and the write ends of its stdout and stderr pipes. The server forks; the child makes a process
group of its own (so the gateway can kill the call's whole tree and never the server), says
``pid`` on the call socket (the gateway reads the pid, translated into its PID namespace, from the
kernel's credentials), waits for ``go`` (sent once the gateway has placed it in the call's
cgroups), then takes the call's stdio, directory and environment and runs the handler exactly as
a cold ``hw.main()`` would, exiting with the contract's codes. The server reaps it and writes its
wait status (``exit N``, negative for a signal) on the call socket.

Every call starts from the state the server had after the import: module globals the handler
changes die with the child. The server itself is made non-dumpable, so a call (same uid) cannot
ptrace it or read its memory to reach later calls. It serves until the gateway closes its socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

#: the inherited socket's descriptor, in the environment of a warm server
WARM_FD = "HATCHWAY_WARM_FD"
#: the largest request message (a call's directory and environment)
MAX_MESSAGE = 1 << 20
#: how a child that never got its ``go`` ends (the gateway gave up on the call before it started)
NOT_STARTED = 125
_PR_SET_DUMPABLE = 4


def is_warm() -> bool:
    """Whether this process was started as a warm server."""
    return bool(os.environ.get(WARM_FD))


def serve(run_call: Callable[[], int]) -> None:
    """Serve calls until the gateway hangs up; ``run_call`` runs one call in a child, its exit code."""
    fd = int(os.environ.pop(WARM_FD))
    control = socket.socket(fileno=fd)
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    control.sendall(b"ready")
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, None)
    while True:
        for key, _ in selector.select():
            if key.data is None:
                try:
                    message, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, 3)
                except OSError:
                    message, fds = b"", []
                if not message:
                    for extra in fds:
                        os.close(extra)
                    os._exit(0)  # the gateway hung up: calls in flight are the gateway's to end
                if len(fds) != 3:
                    for extra in fds:
                        os.close(extra)
                    continue
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    _child(control, message, fds, run_call)
                for extra in fds[1:]:
                    os.close(extra)
                pidfd = os.pidfd_open(pid)
                selector.register(pidfd, selectors.EVENT_READ, (pid, fds[0]))
            else:
                pid, call = key.data
                selector.unregister(key.fd)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                with contextlib.suppress(OSError):
                    os.write(call, f"exit {os.waitstatus_to_exitcode(status)}".encode())
                os.close(call)


def _child(control: socket.socket, message: bytes, fds: list[int], run_call: Callable[[], int]) -> None:
    """The forked call: its own group, placed by the gateway, then the handler; never returns."""
    code = 2
    try:
        control.close()
        call_fd, out, err = fds
        os.setpgid(0, 0)
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(number, signal.SIG_DFL)
        request: dict[str, Any] = json.loads(message)
        call = socket.socket(fileno=call_fd)
        call.sendall(b"pid")
        if call.recv(16) != b"go":
            os._exit(NOT_STARTED)
        call.close()
        null = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(source, target)
            os.close(source)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        code = run_call()
    except BaseException:  # noqa: BLE001 - whatever it was, the call ends with an application error
        with contextlib.suppress(Exception):
            import traceback

            traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
