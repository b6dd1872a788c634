"""The container contract's mechanics, the same on the gateway and inside a container.

Standard library only (this module is installed into action images with the runtime adapter):

* :class:`Workspace` - the private data directory (``config.json``, ``out/``), removed afterwards.
* :class:`OutputCollector` - turns the action's byte streams into log entries: lines, timestamps,
  redaction of secrets, the per-run log cap with an explicit truncation entry, and the sync stdout cap.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import shutil
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from hatchway.runtime.redact import NO_SECRETS, RedactorLike

MIB = 1024 * 1024
#: a line longer than this is cut into pieces (redacted with a look past each cut: a secret is never cut in two)
MAX_LINE_BYTES = 64 * 1024
#: result.json / exports.json larger than this are an application error
MAX_OUTPUT_FILE_BYTES = 6 * MIB
#: how many trailing lines of each stream are kept for error messages
TAIL_LINES = 20
#: Lambda's synchronous response limit: the JSON a function answers (its runtime encodes it), in bytes
LAMBDA_RESPONSE_BYTES = 6_291_556
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: How many log entries of each end a run record carries in ``os``; the rest is in ``/logs``.
OS_PREVIEW_HEAD = 20
OS_PREVIEW_TAIL = 80


def encoded_size(value: Any) -> int:
    """Bytes of ``value`` as JSON the way a Lambda runtime may encode it (ASCII escapes: the most)."""
    return len(json.dumps(value))


def leave_out(count: int, excess: int, size_of: Callable[[int], int], keep_last: int = TAIL_LINES) -> set[int]:
    """Which of ``count`` log entries to leave out of an answer so that ``excess`` bytes go (``size_of``:
    an entry's bytes there): those before the last ``keep_last``, newest first - the first lines stay
    longest, the last ones (a user error's message) longer still."""
    tail = count - min(keep_last, count)
    cut: set[int] = set()
    for index in itertools.chain(range(tail - 1, -1, -1), range(count - 1, tail - 1, -1)):
        if excess <= 0:
            break
        excess -= size_of(index)
        cut.add(index)
    return cut


class Mode(StrEnum):
    """How an action was invoked: a queued run, or a sync call whose stdout is the answer."""

    ASYNC = "async"
    SYNC = "sync"


@dataclass
class LogEntry:
    """One line of an action's output, or a note of the gateway (``k == "system"``)."""

    k: str
    ts: int
    msg: str
    err: dict[str, str] | None = None
    seq: int = 0

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "k": self.k, "ts": self.ts, "msg": self.msg}
        if self.err:
            out["err"] = self.err
        return out


class Workspace:
    """A private directory for one attempt.

    ``config.json`` (the contract), ``parameters.json`` (the parameters alone, for Roboto's
    ``ROBOTO_ACTION_PARAMETERS_FILE``), an ``in/`` directory (inputs; Keboola's and Roboto's input
    directory), an empty ``out/``, and ``tmp/`` (the action's TMPDIR, where a file stash lives).
    """

    def __init__(self, root: Path, name: str) -> None:
        self.owner: int | None = None
        self.path = root / name
        self.inputs = self.path / "in"
        self.out = self.path / "out"
        self.tmp = self.path / "tmp"

    def create(self, config: dict[str, Any], is_made: bool = False, owner: int | None = None) -> Workspace:
        """Make the directories (unless ``is_made``: an empty workspace was moved here) and write the contract.

        With ``owner`` the workspace and its files belong to that uid (and gid): an action running
        under a uid of its own, and nobody else, can read its parameters and write its outputs.
        """
        if not is_made:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.path.mkdir(mode=0o700)
            for directory in (self.inputs, self.out, self.tmp):
                directory.mkdir(mode=0o700)
        self.owner = owner
        if owner is not None:
            for directory in (self.path, self.inputs, self.out, self.tmp):
                os.chown(directory, owner, owner)
        _write_private(self.path / "config.json", config, owner)
        _write_private(self.path / "parameters.json", config.get("parameters") or {}, owner)
        return self

    def read_json(self, name: str) -> tuple[Any, str | None]:
        """A JSON file from ``out/``: (value, problem); missing is (None, None).

        The action controls ``out/``: a symbolic link there (to the gateway's key file, say) is
        refused, never followed, and so is anything but a regular file. An ``out/`` that is not a
        folder any more holds nothing.
        """
        try:
            folder = self._open_dir(("out",))
        except OSError:
            return None, None
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=folder)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                return None, f"out/{name} is not a regular file"
        except FileNotFoundError:
            return None, None
        except OSError:
            return None, f"out/{name} cannot be read"
        finally:
            os.close(folder)
        with os.fdopen(fd, "rb") as handle:
            if os.fstat(fd).st_size > MAX_OUTPUT_FILE_BYTES:
                return None, f"out/{name} is larger than {MAX_OUTPUT_FILE_BYTES // MIB} MiB"
            try:
                return json.loads(handle.read()), None
            except (OSError, ValueError):
                return None, f"out/{name} is not valid JSON"

    def _open_dir(self, parts: tuple[str, ...]) -> int:
        """The workspace's folder ``parts`` opened without following a symbolic link on the way."""
        fd = os.open(self.path, _DIR_FLAGS)
        try:
            for part in parts:
                inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = inner
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_file(self, *parts: str) -> int:
        """A descriptor of the regular file ``parts`` below the workspace (``"out", "result.json"``),
        reached without following a symbolic link anywhere (else OSError)."""
        folder = self._open_dir(parts[:-1])
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=folder)
        finally:
            os.close(folder)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, f"{'/'.join(parts)} is not a regular file")
        return fd

    def files(self, *folder: str) -> Iterator[tuple[str, Path]]:
        """The regular files below the workspace's ``folder`` (``"out", "files"``), sorted, as
        (path relative to the folder, a path that reads exactly that file while it is yielded).

        The gateway reads what an action left behind: links are never followed (a link to the
        home would otherwise hand the gateway's files to the action's owner), nor is anything but
        a regular file read. The second item names the open descriptor (``/proc/self/fd/N``).
        """
        try:
            base = self._open_dir(folder)
        except OSError:
            return
        try:
            for directory, dirnames, names, dir_fd in os.fwalk(".", dir_fd=base, follow_symlinks=False):
                dirnames.sort()
                for name in sorted(names):
                    try:
                        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
                    except OSError:
                        continue
                    try:
                        if stat.S_ISREG(os.fstat(fd).st_mode):
                            yield (Path(directory) / name).as_posix(), Path(f"/proc/self/fd/{fd}")
                    finally:
                        os.close(fd)
        finally:
            os.close(base)

    def stage(self, inputs: list[tuple[str, Path]], tmp_source: Path | None) -> None:
        """Copy input files into ``in/`` and a stash's files into ``tmp/`` (copies the action owns,
        never links to the stored originals)."""
        for relative, source in inputs:
            target = (self.inputs / relative).resolve()
            if not target.is_relative_to(self.inputs.resolve()):
                raise ValueError(f"input {relative!r} leaves the input directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        if tmp_source is not None and tmp_source.is_dir():
            shutil.copytree(tmp_source, self.tmp, dirs_exist_ok=True, copy_function=shutil.copyfile)
        if self.owner is not None:
            for folder in (self.inputs, self.tmp):
                for root, dirs, names in os.walk(folder):
                    for name in dirs + names:
                        os.chown(Path(root) / name, self.owner, self.owner, follow_symlinks=False)

    def discard_parameters(self) -> None:
        """Delete the files holding the decrypted parameters, ahead of the rest."""
        for name in ("config.json", "parameters.json"):
            with contextlib.suppress(OSError):
                (self.path / name).unlink()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _write_private(path: Path, data: Any, owner: int | None = None) -> None:
    content = json.dumps(data, ensure_ascii=False).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        if owner is not None:
            os.fchown(fd, owner, owner)
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


class OutputCollector:
    """Collects an action's stdout/stderr as log entries, within the contract's limits.

    ``mode`` says how the output is read: with :attr:`Mode.SYNC` (a sync action was invoked)
    stdout is the answer (kept as bytes up to ``max_stdout_bytes``), not a log.
    Entries are handed to ``flush`` in batches (every ``flush_every`` seconds or 200 entries), so a
    follower sees a long run's log while it runs and the store writes one transaction per batch.
    A run's flushed log lives in the store, so its collector keeps in memory only the head and
    tail that the run record shows: memory per run stays flat however much the action prints.
    """

    def __init__(
        self,
        mode: Mode,
        redactor: RedactorLike = NO_SECRETS,
        max_log_bytes: int = 10 * MIB,
        max_stdout_bytes: int = 6 * MIB,
        flush: Callable[[list[LogEntry]], None] | None = None,
        flush_every: float = 0.2,
    ) -> None:
        self.mode = mode
        self.redactor = redactor
        self.max_log_bytes = max_log_bytes
        self.max_stdout_bytes = max_stdout_bytes
        self._flush = flush
        self._flush_every = flush_every
        self._last_flush = time.monotonic()
        self._retry_at = 0.0  # after a refused batch, the next try waits a second
        self._partial: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        #: characters at the start of a stream's next piece that continue a secret cut at the last piece
        self._carry: dict[str, int] = {"stdout": 0, "stderr": 0}
        self._pending: list[LogEntry] = []
        # everything kept (a sync answer's log); for a flushed run only the preview's head and tail
        self._head: list[LogEntry] = []
        self._tail: deque[LogEntry] | None = deque(maxlen=OS_PREVIEW_TAIL) if flush and mode == Mode.ASYNC else None
        self._tails: dict[str, deque[str]] = {"stdout": deque(maxlen=TAIL_LINES), "stderr": deque(maxlen=TAIL_LINES)}
        self.log_bytes = 0
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self.stdout = bytearray()
        self.stdout_overflow = False
        self._lock = threading.Lock()
        self._closed = False

    # -- feeding ------------------------------------------------------------------------------

    def feed(self, stream: str, data: bytes) -> None:
        if self.mode == Mode.SYNC and stream == "stdout":
            if len(self.stdout) + len(data) > self.max_stdout_bytes:
                self.stdout_overflow = True
                self.stdout += data[: max(0, self.max_stdout_bytes - len(self.stdout))]
            else:
                self.stdout += data
            return
        buffer = self._partial[stream]
        buffer += data
        # a piece of a long line is cut only once enough follows it to see a secret across the cut
        lookahead = self.redactor.longest_bytes
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                if len(buffer) > MAX_LINE_BYTES + lookahead:
                    self._piece(stream, buffer, lookahead)
                    continue
                break
            self._line(stream, bytes(buffer[:cut]))
            del buffer[: cut + 1]
        self._maybe_flush()

    def system(self, message: str, err: dict[str, str] | None = None) -> None:
        with self._lock:
            entry = LogEntry("system", _now_ms(), self.redactor.text(message), err)
            self._keep(entry)
            self._pending.append(entry)

    def _piece(self, stream: str, buffer: bytearray, lookahead: int) -> None:
        """Emit the first ``MAX_LINE_BYTES`` of a line that goes on (cut between characters)."""
        at = MAX_LINE_BYTES
        while at > MAX_LINE_BYTES - 3 and buffer[at] & 0xC0 == 0x80:  # not inside a UTF-8 character
            at -= 1
        head = buffer[:at].decode("utf-8", errors="replace")
        window = buffer[: at + lookahead].decode("utf-8", errors="replace")
        # cut exactly there: a character offset cannot be mapped back to bytes that did not decode
        text, _, self._carry[stream] = self.redactor.split(window, len(head), self._carry[stream], exact=True)
        self._keep_line(stream, text, _now_ms())
        del buffer[:at]

    def _line(self, stream: str, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        carried, self._carry[stream] = self._carry[stream], 0
        self._keep_line(stream, self.redactor.text(text, carried), _now_ms())

    def add(self, stream: str, text: str, ts: int) -> None:
        """Keep one line (already split, e.g. by a remote adapter), redacted and within the cap."""
        self._keep_line(stream, self.redactor.text(text), ts)

    def _keep_line(self, stream: str, text: str, ts: int) -> None:
        self._tails[stream].append(text)
        size = len(text) + 1
        with self._lock:
            if self.log_bytes + size > self.max_log_bytes:
                self.dropped_lines += 1
                self.dropped_bytes += size
                return
            self.log_bytes += size
            entry = LogEntry(stream, ts, text)
            self._keep(entry)
            self._pending.append(entry)

    def _keep(self, entry: LogEntry) -> None:
        if self._tail is None or len(self._head) < OS_PREVIEW_HEAD:
            self._head.append(entry)
        else:
            self._tail.append(entry)

    @property
    def entries(self) -> list[LogEntry]:
        """The entries kept in memory (all of them, or a flushed run's head and tail)."""
        return self._head + list(self._tail) if self._tail is not None else self._head

    def _maybe_flush(self, force: bool = False) -> None:
        if self._flush is None:
            return
        now = time.monotonic()
        if not force and (
            now < self._retry_at or len(self._pending) < 200 and now - self._last_flush < self._flush_every
        ):
            return
        with self._lock:
            batch, self._pending = self._pending, []
        self._last_flush = now
        if not batch:
            return
        try:
            self._flush(batch)
        except Exception:
            # the store is failing (full, locked): keep the batch for the next flush - the log cap
            # bounds what waits - and let only the last flush, at close, give up
            with self._lock:
                self._pending[:0] = batch
            if force:
                raise
            self._retry_at = now + 1.0

    def tick(self) -> None:
        """Called by executors while waiting: flushes a batch that has waited long enough."""
        self._maybe_flush()

    def close(self) -> None:
        """Emit unterminated last lines, record truncation, flush everything."""
        if self._closed:
            return
        self._closed = True
        for stream, buffer in self._partial.items():
            if buffer:
                self._line(stream, bytes(buffer))
                buffer.clear()
        if self.dropped_lines:
            self.system(
                f"log truncated: {self.dropped_lines} lines ({self.dropped_bytes} bytes) over the "
                f"{self.max_log_bytes // MIB} MiB limit were dropped"
            )
        self._maybe_flush(force=True)

    def next_attempt(self, message: str) -> None:
        """Open again for another attempt of the same call (a sync call's retry): its log goes on
        after ``message``, its answer and last lines start empty."""
        self.stdout = bytearray()
        self.stdout_overflow = False
        for tail in self._tails.values():
            tail.clear()
        self._closed = False
        self.system(message)

    # -- reading ------------------------------------------------------------------------------

    def tail(self, stream: str) -> list[str]:
        return list(self._tails[stream])


def _now_ms() -> int:
    return int(time.time() * 1000)
