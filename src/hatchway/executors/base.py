"""The container contract, shared by every executor.

An executor only knows how to start an action somewhere (a host process, a container, a Lambda)
and report how it ended. Everything the contract says about an invocation lives here, once:

* :class:`Invocation` - what to run: the effective spec, decrypted parameters, deadline; it
  renders ``config.json`` and the contract's environment variables.
* :class:`Workspace` - the private data directory (``config.json``, ``out/``), removed afterwards.
* :class:`OutputCollector` - turns the action's byte streams into log entries: lines, timestamps,
  redaction of secrets, the per-run log cap with an explicit truncation entry, and the sync stdout cap.
* :func:`judge` - exit code, signal, timeout and outputs -> the run's status, error, ``ret`` and
  ``exports``, and whether another attempt may help.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hatchway.config import Settings
from hatchway.errors import new_exception_id
from hatchway.runs import LogEntry, Mode, RunError, RunStatus
from hatchway.secrets.redact import NO_SECRETS, Redactor
from hatchway.spec import ActionSpec

MIB = 1024 * 1024
#: a line longer than this is cut into pieces (each piece still redacted as a whole)
MAX_LINE_BYTES = 64 * 1024
#: result.json / exports.json larger than this are an application error
MAX_OUTPUT_FILE_BYTES = 6 * MIB
#: how many trailing lines of each stream are kept for error messages
TAIL_LINES = 20
MAX_MESSAGE_CHARS = 4000


@dataclass
class Invocation:
    """One attempt of one run, as an executor needs it."""

    run_id: str
    project_id: str
    environment: str
    action_name: str
    version: int
    digest: str
    invoked: str
    mode: Mode
    spec: ActionSpec
    parameters: dict[str, Any]
    attempt: int
    deadline: float  # epoch seconds
    redactor: Redactor = NO_SECRETS
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_config: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds_left(self) -> float:
        return self.deadline - time.time()

    def config_document(self) -> dict[str, Any]:
        """The content of ``config.json``."""
        return {
            "action": self.invoked,
            "parameters": self.parameters,
            "run": {
                "id": self.run_id,
                "project_id": self.project_id,
                "environment": self.environment,
                "action_name": self.action_name,
                "version": self.version,
                "digest": self.digest,
                "attempt": self.attempt,
                "deadline": self.deadline,
            },
            **self.extra_config,
        }

    def environment_for(self, data_dir: str) -> dict[str, str]:
        """The contract's variables plus the action's own ``env_vars`` (never parameters)."""
        env = dict(self.spec.container_parameters.env_vars or {}) if self.spec.container_parameters else {}
        env.update(self.extra_env)
        env.update(
            {
                "HATCHWAY_DATA_DIR": data_dir,
                "HATCHWAY_RUN_ID": self.run_id,
                "HATCHWAY_ACTION": self.invoked,
                "HATCHWAY_ACTION_NAME": self.action_name,
                "HATCHWAY_PROJECT_ID": self.project_id,
                "HATCHWAY_ENVIRONMENT": self.environment,
                "HATCHWAY_ATTEMPT": str(self.attempt),
                "HATCHWAY_DEADLINE": f"{self.deadline:.3f}",
            }
        )
        return env


class Workspace:
    """A private directory for one attempt: ``config.json`` and an empty ``out/``."""

    def __init__(self, root: Path, name: str) -> None:
        self.path = root / name
        self.out = self.path / "out"

    def create(self, config: dict[str, Any]) -> Workspace:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path.mkdir(mode=0o700)
        self.out.mkdir(mode=0o700)
        fd = os.open(self.path / "config.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(config, handle, ensure_ascii=False)
        return self

    def read_json(self, name: str) -> tuple[Any, str | None]:
        """A JSON file from ``out/``: (value, problem); missing is (None, None)."""
        path = self.out / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None, None
        except OSError:
            return None, f"out/{name} cannot be read"
        if size > MAX_OUTPUT_FILE_BYTES:
            return None, f"out/{name} is larger than {MAX_OUTPUT_FILE_BYTES // MIB} MiB"
        try:
            with path.open("rb") as handle:
                return json.loads(handle.read()), None
        except (OSError, ValueError):
            return None, f"out/{name} is not valid JSON"

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# output


class OutputCollector:
    """Collects an action's stdout/stderr as log entries, within the contract's limits.

    For sync actions stdout is the answer (kept as bytes up to ``max_stdout_bytes``), not a log.
    Entries are handed to ``flush`` in batches (every ``flush_every`` seconds or 200 entries), so a
    follower sees a long run's log while it runs and the store writes one transaction per batch.
    """

    def __init__(
        self,
        mode: Mode,
        redactor: Redactor = NO_SECRETS,
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
        self._partial: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self._pending: list[LogEntry] = []
        self.entries: list[LogEntry] = []  # everything kept (sync answers and the run's os preview)
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
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                if len(buffer) > MAX_LINE_BYTES:
                    self._line(stream, bytes(buffer[:MAX_LINE_BYTES]))
                    del buffer[:MAX_LINE_BYTES]
                    continue
                break
            self._line(stream, bytes(buffer[:cut]))
            del buffer[: cut + 1]
        self._maybe_flush()

    def system(self, message: str, err: dict[str, str] | None = None) -> None:
        with self._lock:
            entry = LogEntry("system", _now_ms(), self.redactor.text(message), err)
            self.entries.append(entry)
            self._pending.append(entry)

    def _line(self, stream: str, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        text = self.redactor.text(text)
        self._tails[stream].append(text)
        size = len(text) + 1
        with self._lock:
            if self.log_bytes + size > self.max_log_bytes:
                self.dropped_lines += 1
                self.dropped_bytes += size
                return
            self.log_bytes += size
            entry = LogEntry(stream, _now_ms(), text)
            self.entries.append(entry)
            self._pending.append(entry)

    def _maybe_flush(self, force: bool = False) -> None:
        if self._flush is None:
            return
        now = time.monotonic()
        if not force and len(self._pending) < 200 and now - self._last_flush < self._flush_every:
            return
        with self._lock:
            batch, self._pending = self._pending, []
        self._last_flush = now
        if batch:
            self._flush(batch)

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

    # -- reading ------------------------------------------------------------------------------

    def tail(self, stream: str) -> list[str]:
        return list(self._tails[stream])


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------------------------
# outcome


@dataclass
class Execution:
    """How an attempt ended, as the executor saw it."""

    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    oom: bool = False
    duration_ms: int = 0
    ret: Any = None
    exports: Any = None
    output_problem: str | None = None
    platform_error: str | None = None


@dataclass
class Verdict:
    """What an attempt means for the run."""

    status: RunStatus
    error: RunError | None = None
    ret: Any = None
    exports: dict[str, Any] = field(default_factory=dict)
    is_retryable: bool = False

    @property
    def is_success(self) -> bool:
        return self.status == RunStatus.SUCCESSFUL


_FRAME = re.compile(r"^\s+(File \"|at |\.\.\.)")


def user_message(collector: OutputCollector) -> str:
    """The message of a user error: the last stderr lines (else stdout), stack traces cut away."""
    lines = [line for line in collector.tail("stderr") if line.strip()]
    if not lines:
        lines = [line for line in collector.tail("stdout") if line.strip()]
        if not lines and collector.stdout:
            lines = collector.stdout.decode("utf-8", "replace").strip().splitlines()[-TAIL_LINES:]
            lines = [collector.redactor.text(line) for line in lines]
    kept: list[str] = []
    in_trace = False
    for line in lines:
        if line.startswith("Traceback (most recent call last)"):
            in_trace = True
            continue
        if in_trace and (_FRAME.match(line) or line.startswith("    ")):
            continue
        if _FRAME.match(line):
            continue
        in_trace = False
        kept.append(line)
    message = "\n".join(kept[-5:]).strip() or "the action reported a user error without a message"
    return message[-MAX_MESSAGE_CHARS:]


def judge(execution: Execution, collector: OutputCollector, mode: Mode, limit_seconds: float) -> Verdict:
    """Map an attempt's end to the run's status and error, per the contract."""
    if execution.cancelled:
        return Verdict(RunStatus.TERMINATED, RunError("cancelled", "the run was cancelled"))
    if execution.platform_error:
        return Verdict(
            RunStatus.FAILED,
            RunError("platform", execution.platform_error, new_exception_id(), 500),
            is_retryable=True,
        )
    if execution.timed_out:
        return Verdict(
            RunStatus.FAILED,
            RunError("timeout", f"the action did not finish within {limit_seconds:g} s", new_exception_id(), 504),
            is_retryable=True,
        )
    if execution.exit_code == 1:
        return Verdict(RunStatus.FAILED, RunError("user", user_message(collector), None, 400))
    if execution.exit_code != 0 or execution.oom:
        if execution.oom:
            reason = "out of memory"
        elif execution.signal is not None:
            reason = f"killed by signal {execution.signal}"
        else:
            reason = f"exit code {execution.exit_code}"
        return _app_error(reason)
    if mode == Mode.SYNC:
        if collector.stdout_overflow:
            return _app_error(f"sync output over {collector.max_stdout_bytes // MIB} MiB")
        try:
            ret = json.loads(collector.stdout)
        except ValueError:
            return _app_error("sync action did not print one JSON document on stdout")
        return Verdict(RunStatus.SUCCESSFUL, None, collector.redactor.data(ret), _exports(execution, collector))
    if execution.output_problem:
        return _app_error(execution.output_problem)
    if execution.exports is not None and not isinstance(execution.exports, dict):
        return _app_error("out/exports.json must hold a JSON object")
    return Verdict(RunStatus.SUCCESSFUL, None, collector.redactor.data(execution.ret), _exports(execution, collector))


def _exports(execution: Execution, collector: OutputCollector) -> dict[str, Any]:
    if isinstance(execution.exports, dict):
        redacted: dict[str, Any] = collector.redactor.data(execution.exports)
        return redacted
    return {}


def _app_error(reason: str) -> Verdict:
    """An application error; ``reason`` is for the server log and the run record, never a 500 body."""
    return Verdict(RunStatus.FAILED, RunError("application", reason, new_exception_id(), 500), is_retryable=True)


class BaseExecutor(ABC):
    """Starts an attempt somewhere and reports how it ended."""

    name: str = "base"

    @classmethod
    def from_settings(cls, settings: Settings) -> BaseExecutor:
        """An executor configured from the gateway's settings."""
        raise NotImplementedError

    def check(self, spec: ActionSpec, invoked: str) -> None:
        """Raise :class:`~hatchway.errors.ValidationFailed` if this executor cannot run ``spec``."""

    @abstractmethod
    def execute(self, invocation: Invocation, collector: OutputCollector, cancel: threading.Event) -> Execution:
        """Run one attempt to its end (success, failure, deadline or ``cancel``)."""

    def close(self) -> None:
        """Stop background work and release resources."""


def read_outputs(workspace: Workspace, execution: Execution) -> None:
    """Fill ``ret``/``exports`` of an async attempt from ``out/``."""
    execution.ret, problem = workspace.read_json("result.json")
    execution.exports, problem2 = workspace.read_json("exports.json")
    execution.output_problem = problem or problem2


def safe_remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(path)
