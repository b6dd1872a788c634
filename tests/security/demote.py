"""Run a command as another user, optionally on what looks like a kernel without Landlock.

    python demote.py UID [--no-landlock] -- COMMAND...

Used by tests/security to start ``hatchway serve`` unprivileged. ``--no-landlock`` installs a
seccomp filter that answers ENOSYS to the three Landlock system calls (444-446), as a kernel
older than 5.13 would; it is inherited by everything the command starts. Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
import sys

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, ENOSYS = 0x7FFF0000, 0x00050000, 38
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06


def hide_landlock() -> None:
    if platform.machine() != "x86_64":  # the filter reads the system call number without checking the arch
        raise SystemExit("--no-landlock is written for x86_64")
    program = [
        (BPF_LD_W_ABS, 0, 0, 0),  # the system call number
        (BPF_JEQ_K, 3, 0, 444),
        (BPF_JEQ_K, 2, 0, 445),
        (BPF_JEQ_K, 1, 0, 446),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | ENOSYS),
    ]
    code = b"".join(struct.pack("HBBI", *op) for op in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = struct.pack("HxxxxxxQ", len(program), ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) or libc.prctl(
        PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.c_char_p(fprog), 0, 0
    ):
        raise OSError(ctypes.get_errno(), "seccomp")


def main(args: list[str]) -> None:
    uid = int(args.pop(0))
    if args[0] == "--no-landlock":
        args.pop(0)
        hide_landlock()
    if args[0] == "--":
        args.pop(0)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    os.execv(args[0], args)  # noqa: S606 - the command line this helper is given


if __name__ == "__main__":
    main(sys.argv[1:])
