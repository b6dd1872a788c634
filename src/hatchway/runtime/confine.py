"""Confine what a process starts, from a thread of its own: Landlock, credentials, no_new_privs.

Standard library only (ctypes). The gateway must never be restricted itself, and an action must be
restricted before its first instruction. Running Python between ``fork`` and ``exec`` (a
``preexec_fn``) is unsafe in a multi-threaded process - the child runs every at-fork hook, and
locks other threads held stay held - and it rules out ``vfork``: a spawn took 9 ms instead of
1.3 ms on the 2-core machine the benchmarks run on. A helper process that restricts itself and
then ``exec``s the action costs a Python start (14 ms there). But a Landlock domain,
``no_new_privs`` and credentials set by the raw system calls belong to a *thread*, and pass to the
processes it starts. :func:`start_confined` therefore restricts a short-lived thread and starts
the action from it, still with ``vfork`` (1.5 ms there), while every other thread of the gateway
keeps its rights; nothing else runs in that thread, and it ends right after.

Landlock rights the running kernel's ABI does not know are dropped (best effort): ABI 1 handles
files, 2 adds links and renames across directories, 3 truncation, 4 TCP bind and connect,
5 device ioctls, 6 confines abstract unix sockets and signals to the domain.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# the Landlock system calls have one number on every architecture
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
# setgroups, setresgid, setresuid: glibc's wrappers change every thread of the process, the
# system calls only the calling one
_CREDENTIAL_CALLS = {"x86_64": (116, 119, 117), "aarch64": (159, 149, 147), "riscv64": (159, 149, 147)}

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

#: the rights that apply to a file (the others are about what a directory holds)
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
READ = EXECUTE | READ_FILE | READ_DIR
EVERYTHING = (1 << 16) - 1
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc: Any = None
_abi: int | None = None


def _lib() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def abi() -> int:
    """The Landlock ABI this kernel offers; 0 where it has none (or it is disabled)."""
    global _abi
    if _abi is None:
        _abi = 0
        if platform.system() == "Linux":
            with contextlib.suppress(OSError, AttributeError):
                found = _lib().syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
                _abi = max(int(found), 0)
    return _abi


def can_set_thread_credentials() -> bool:
    """Whether :func:`start_confined` can give its thread other credentials on this architecture."""
    return platform.machine() in _CREDENTIAL_CALLS


class Ruleset:
    """A Landlock ruleset being built: whatever no rule allows is denied."""

    def __init__(self, *, network: bool = True, version: int | None = None) -> None:
        self.abi = abi() if version is None else version
        if self.abi < 1:
            raise OSError("this kernel offers no Landlock")
        self.handled = _FS_BY_ABI.get(self.abi, EVERYTHING)
        attr = _RulesetAttr(self.handled, 0 if network or self.abi < 4 else NET_BIND_TCP | NET_CONNECT_TCP, 0)
        if self.abi >= 6:
            attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = ctypes.sizeof(ctypes.c_uint64) * (1 if self.abi < 4 else 2 if self.abi < 6 else 3)
        self.fd = _check(_lib().syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0), "landlock")
        #: whether TCP connect and bind are denied (ABI >= 4, network not allowed)
        self.confines_tcp = bool(attr.net)

    def allow(self, path: str, access: int) -> bool:
        """Allow ``access`` beneath ``path`` (a file gets only file rights); False if it is not there."""
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            return self.allow_fd(fd, access)
        finally:
            os.close(fd)

    def allow_fd(self, fd: int, access: int, is_dir: bool | None = None) -> bool:
        """Allow ``access`` beneath what ``fd`` (an ``O_PATH`` descriptor will do) is open on."""
        if is_dir is None:
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        allowed = access & self.handled & (EVERYTHING if is_dir else FILE_RIGHTS)
        if not allowed:
            return False
        rule = _PathBeneath(allowed, fd)
        _check(_lib().syscall(_ADD_RULE, self.fd, _RULE_PATH_BENEATH, ctypes.byref(rule), 0), "landlock rule")
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Ruleset:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _confine_this_thread(uid: int | None, gid: int | None, ruleset: Ruleset | None) -> None:
    libc = _lib()
    if uid is not None:
        setgroups, setresgid, setresuid = _CREDENTIAL_CALLS[platform.machine()]
        group = ctypes.c_uint(uid if gid is None else gid)
        _check(libc.syscall(setgroups, 0, None), "setgroups")
        _check(libc.syscall(setresgid, group, group, group), "setresgid")
        # every uid of the thread changes, so the kernel clears its capabilities too
        _check(libc.syscall(setresuid, ctypes.c_uint(uid), ctypes.c_uint(uid), ctypes.c_uint(uid)), "setresuid")
    # no_new_privs: no set-user-ID program or file capability hands the action privileges (and
    # an unprivileged thread may enter a Landlock domain only with it)
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if ruleset is not None:
        _check(libc.syscall(_RESTRICT_SELF, ruleset.fd, 0), "landlock_restrict_self")


def _wait_gone(tid: int | None, seconds: float = 1.0) -> None:
    """Until the thread ``tid`` has left the kernel too: ``join`` returns a moment before it has. The
    process it started is its child; one that asks to die with its parent (bubblewrap's
    ``--die-with-parent``, once the prologue lets it run) would otherwise be SIGKILLed by that
    thread's exit, and not by the gateway's."""
    if tid is None:
        return
    task = Path(f"/proc/self/task/{tid}")
    deadline = time.monotonic() + seconds
    while task.exists() and time.monotonic() < deadline:
        time.sleep(0.0001)


def start_confined(
    start: Callable[[], T], *, uid: int | None = None, gid: int | None = None, ruleset: Ruleset | None = None
) -> T:
    """Call ``start`` (which starts a process) in a new thread that first takes ``uid``/``gid`` (no
    supplementary groups, no capabilities), ``no_new_privs`` and ``ruleset``; return its result."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            _confine_this_thread(uid, gid, ruleset)
            outcome.append((True, start()))
        except BaseException as exc:  # handed to the caller
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="hatchway-confined-start", daemon=True)
    thread.start()
    thread.join()
    _wait_gone(thread.native_id)
    is_ok, value = outcome[0]
    if not is_ok:
        raise value
    return value  # type: ignore[no-any-return]
