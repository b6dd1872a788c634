"""The warm side of :func:`hatchway.runtime.main`: the action's own process as a fork server.

Standard library only (this package is copied into images whole). The gateway starts an action
that opted in (``"warm": true``) the way it starts a cold one - same sandbox level, limits and uid,
the same environment without the per-call variables - plus ``HATCHWAY_WARM_FD``, an inherited
``SOCK_SEQPACKET`` socket. ``hw.main()`` sees it after the action module imported everything and
registered its handlers, says ``ready`` and serves. Ahead of each call the gateway asks for a
*spare*: the server forks and hands the gateway one end of a socket pair whose other end the fork
holds. The fork makes a
process group of its own (so the gateway can kill the call's whole tree and never the server) and
says ``pid`` (the gateway reads the pid, translated into its PID namespace, from the kernel's
credentials and moves the fork into the call's cgroups) - all before a call needs it. A call then
sends the spare one message (its working directory and environment as JSON) with the write ends
of its stdout and stderr pipes; the fork says ``go`` (so a call handed to a spare that died with
its server runs cold instead of failing), takes them, its directory and environment and runs the
handler exactly as a cold ``hw.main()`` would, exiting with the contract's codes. The server
reaps it and writes its wait status (``exit N``, negative for a signal) on the same socket.

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
#: how a spare that never got a call ends (the gateway let it go)
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
                    message = control.recv(64)
                except OSError:
                    message = b""
                if not message:
                    os._exit(0)  # the gateway hung up: its calls, and its spares, are the gateway's to end
                if message != b"spare":
                    continue
                gateway, call = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                # the gateway learns the fork's pid, in its own PID namespace, from the kernel's credentials
                gateway.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
                pid = os.fork()
                if pid == 0:
                    # nothing of the server's other calls: their sockets would let this one answer for them
                    for other in list(selector.get_map().values()):
                        if other.data is not None:
                            os.close(other.fd)
                            other.data[1].close()
                    selector.close()
                    control.close()
                    gateway.close()
                    _child(call, run_call)
                socket.send_fds(control, [b"spare"], [gateway.fileno()])
                gateway.close()
                pidfd = os.pidfd_open(pid)
                selector.register(pidfd, selectors.EVENT_READ, (pid, call))
            else:
                pid, call = key.data
                selector.unregister(key.fd)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                with contextlib.suppress(OSError):
                    call.send(f"exit {os.waitstatus_to_exitcode(status)}".encode())
                call.close()


def _child(call: socket.socket, run_call: Callable[[], int]) -> None:
    """A spare fork: its own group, then (placed by the gateway meanwhile) one call; never returns."""
    code = 2
    try:
        os.setpgid(0, 0)
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(number, signal.SIG_DFL)
        call.sendall(b"pid")
        message, fds, _, _ = socket.recv_fds(call, MAX_MESSAGE, 2)
        if not message or len(fds) != 2:
            os._exit(NOT_STARTED)  # the gateway let it go unused
        call.sendall(b"go")  # the call is this process's now (a fork that died unused never says it)
        call.close()
        request: dict[str, Any] = json.loads(message)
        null = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((null, 0), (fds[0], 1), (fds[1], 2)):
            os.dup2(source, target)
            os.close(source)
        os.chdir(request["cwd"])
        env: dict[str, str] = request["env"]
        # only what differs from the server's: every key written costs the fork copies of the pages it touches
        for key in [key for key in os.environ if key not in env]:
            del os.environ[key]
        for key, value in env.items():
            if os.environ.get(key) != value:
                os.environ[key] = value
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
