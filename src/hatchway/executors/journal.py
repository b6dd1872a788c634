"""What a crashed gateway leaves behind, written down as it goes: one append-only journal per process.

A gateway killed with SIGKILL cannot stop its actions (they run in sessions of their own) nor
remove their workspaces (which hold the decrypted parameters until the action ends). So before a
workspace is made, its name is appended to the journal of the process that makes it; once its
action started, the action's pid and start time; once the workspace is gone, its end.
:func:`recover`, run at start-up, reads the journals of processes that are gone, kills the
process groups of actions that never ended and removes their workspaces.

One file per process, appended to with one ``write`` per line, costs no file-system metadata
change per attempt: a file per attempt - created, rewritten with the pid, unlinked - cost three
journaled metadata operations (0.1-0.2 ms each on the ext4 the benchmarks run on). The journal is
cut back to the attempts still open once it has grown past :data:`COMPACT_BYTES`.

A pid alone does not name a process for long (pids are reused), so each is stored with its start
time. Reading that from ``/proc/<pid>/stat`` right after the spawn may wait for the child's
``exec`` (up to a millisecond here), so the journal stores the window of boot-clock ticks the
spawn happened in instead: the kernel's start time of the process falls inside it, and a reused
pid would have to be handed out again within the same tick to match.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hatchway.runtime.spawn import kill_group

#: a journal grown past this is cut back to its open attempts
COMPACT_BYTES = 1 << 20
SUFFIX = ".journal"
_TICK_NS = 1_000_000_000 // (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)


def boot_ticks() -> int:
    """Now, in the clock ticks since boot that ``/proc/<pid>/stat`` gives a process's start time in."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // _TICK_NS


def start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (tells a pid from a re-used one)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    return int(stat[stat.rfind(b")") + 2 :].split()[19])


def is_alive(pid: int, started: int | list[int] | None) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` (a tick, or a [first, last] window)."""
    if started is None:
        return False
    now = start_time(pid)
    if now is None:
        return False
    if isinstance(started, list):
        return started[0] <= now <= started[1]
    return now == started


def owner_alive(owner: str) -> bool:
    """Whether ``owner`` ("<pid>-<start time>") is a live process."""
    pid, _, started = owner.partition("-")
    return pid.isdigit() and started.isdigit() and is_alive(int(pid), int(started))


class Journal:
    """This process's journal of attempts: appended to by any thread, read by :func:`recover` after a crash."""

    def __init__(self, directory: Path, owner: str, compact_bytes: int = COMPACT_BYTES) -> None:
        self.path = directory / f"{owner}{SUFFIX}"
        self.compact_bytes = compact_bytes
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0
        #: the lines of attempts not yet ended (what a compaction keeps), by workspace
        self._open: dict[str, list[bytes]] = {}

    def began(self, workspace: str) -> None:
        """Before ``workspace`` is made: recovery removes it unless :meth:`ended` follows."""
        self._append(workspace, {"w": workspace})

    def started(self, workspace: str, pid: int, first_tick: int) -> None:
        """The action of ``workspace`` started as ``pid`` no earlier than ``first_tick`` (:func:`boot_ticks`)."""
        self._append(workspace, {"w": workspace, "pid": pid, "start": [first_tick, boot_ticks()]})

    def ended(self, workspace: str) -> None:
        """``workspace`` is gone and its processes with it."""
        with self._lock:
            if self._open.pop(workspace, None) is None:
                return
            self._write(json.dumps({"w": workspace, "end": 1}).encode() + b"\n")
            if self._size > self.compact_bytes:
                self._compact()

    def _append(self, workspace: str, record: dict[str, Any]) -> None:
        line = json.dumps(record).encode() + b"\n"
        with self._lock:
            self._open.setdefault(workspace, []).append(line)
            self._write(line)

    def _write(self, line: bytes) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            self._size = os.fstat(self._fd).st_size
        os.write(self._fd, line)  # one write per line: a crash leaves at most the last one torn
        self._size += len(line)

    def _compact(self) -> None:
        """Replace the journal by the lines of the attempts still open (atomically: a rename)."""
        kept = b"".join(line for lines in self._open.values() for line in lines)
        fresh = self.path.with_name(self.path.name + ".new")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, kept)
            fresh.replace(self.path)
        except OSError:
            os.close(fd)
            fresh.unlink(missing_ok=True)
            return  # keep appending to the long one
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._size = fd, len(kept)

    def close(self) -> None:
        """Stop appending; the journal goes when no attempt is open (else recovery reads it)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if not self._open:
                self.path.unlink(missing_ok=True)


def read_journal(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """The owner of a journal and its attempts that did not end (a torn last line is skipped).

    A file without the suffix is a record of an older release: one attempt, its owner inside.
    """
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return "", []
    if SUFFIX not in path.name:
        try:
            record = json.loads(b"".join(lines))
            return f"{record['owner_pid']}-{record['owner_start']}", [record]
        except (ValueError, KeyError, TypeError):
            return "", [{"workspace": path.name}]
    found: dict[str, dict[str, Any]] = {}
    for raw in lines:
        try:
            record = json.loads(raw)
            name = str(record["w"])
        except (ValueError, KeyError, TypeError):
            continue
        if record.get("end"):
            found.pop(name, None)
        else:
            found.setdefault(name, {"workspace": name}).update(record)
    return path.name.split(SUFFIX, 1)[0], list(found.values())


def recover(directory: Path, work_dir: Path, me: str, is_owner_alive: Callable[[str], bool] = owner_alive) -> int:
    """Settle the journals under ``directory`` of processes that are gone: kill the process groups
    of their open attempts and remove those workspaces. How many groups were killed."""
    killed = 0
    for path in directory.iterdir():
        if not path.is_file():
            continue
        owner, attempts = read_journal(path)
        if owner and (owner == me or is_owner_alive(owner)):
            continue  # this process's own, or another live gateway's on this home
        for attempt in attempts:
            pid = attempt.get("pid")
            if isinstance(pid, int) and is_alive(pid, attempt.get("start")):
                kill_group(pid, signal.SIGKILL)
                killed += 1
            workspace = str(attempt.get("workspace") or "")
            if workspace and "/" not in workspace and not workspace.startswith("."):
                shutil.rmtree(work_dir / workspace, ignore_errors=True)
        path.unlink(missing_ok=True)
    return killed
