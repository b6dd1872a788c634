"""The container contract, shared by every executor and by the use cases that judge attempts.

An executor only knows how to start an action somewhere (a host process, a container, a Lambda)
and report how it ended. Everything the contract says about an invocation lives here, once:

* :class:`Invocation` - what to run: the effective spec, decrypted parameters, deadline; it
  renders ``config.json`` and the contract's environment variables.
* :class:`Workspace` and :class:`OutputCollector` (from :mod:`hatchway.runtime.contract`, shared
  with the container adapter) - the data directory, and the action's output as capped, redacted
  log entries.
* :func:`judge` - exit code, signal, timeout and outputs -> the run's status, error, ``ret`` and
  ``exports``, and whether another attempt may help.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hatchway.domain.runs import Mode, RunError, RunStatus
from hatchway.domain.spec import ActionSpec
from hatchway.errors import new_exception_id
from hatchway.runtime.contract import LAMBDA_RESPONSE_BYTES, MIB, TAIL_LINES, OutputCollector, Workspace
from hatchway.runtime.redact import NO_SECRETS, RedactorLike

MAX_MESSAGE_CHARS = 4000
#: the reason of an application error whose action was killed for using more memory than allowed
OUT_OF_MEMORY = "out of memory"
#: stands for the data directory in the environment of an adapter payload (the adapter makes the directory)
DATA_DIR_TOKEN = "${HATCHWAY_DATA_DIR}"  # noqa: S105 - a placeholder, not a secret


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
    redactor: RedactorLike = NO_SECRETS
    extra_env: dict[str, str] = field(default_factory=dict)
    extra_config: dict[str, Any] = field(default_factory=dict)
    #: files to place in ``in/`` before the action starts: (path inside in/, host file)
    input_files: list[tuple[str, Path]] = field(default_factory=list)
    #: a directory whose files the action finds in its TMPDIR (a file stash)
    tmp_source: Path | None = None
    #: called with the workspace before it is removed (artifacts, the stash's new content)
    before_cleanup: Callable[[Path], None] | None = None
    #: retries an executor may make itself within this attempt (HTTP actions)
    retries: int = 0
    #: the pipeline execution whose step this run is (its filesystem is the execution's), or None
    pipeline_execution: str | None = None

    @property
    def output_mode(self) -> Mode:
        """How output is read: a sync action answers on stdout; ``run`` writes ``out/result.json``."""
        return Mode.ASYNC if self.invoked == "run" else Mode.SYNC

    @property
    def seconds_left(self) -> float:
        return self.deadline - time.time()

    def config_document(self) -> dict[str, Any]:
        """The content of ``config.json``.

        Objects a Keboola component reads (``image_parameters``, ``storage``, ``authorization``)
        are always present, never ``null``.
        """
        return {
            "action": self.invoked,
            "parameters": self.parameters,
            "image_parameters": {},
            "storage": {},
            "authorization": {},
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
        """The contract's variables plus the action's own ``env_vars`` (never parameters).

        Besides hatchway's own variables the contract speaks Keboola's (``KBC_*``) and Roboto's
        (``ROBOTO_*``) dialects, so components written for those platforms run unchanged. The
        Roboto SDK builds an API client at start-up, so it gets a placeholder key and an endpoint
        that is not Roboto's: no real credential ever enters the action.
        """
        env = dict(self.spec.container_parameters.env_vars or {}) if self.spec.container_parameters else {}
        env.update(self.extra_env)
        base = data_dir.rstrip("/")
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
                # Keboola's common interface
                "KBC_DATADIR": base + "/",
                "KBC_RUNID": self.run_id,
                "KBC_PROJECTID": self.project_id,
                "KBC_COMPONENTID": self.action_name,
                "KBC_CONFIGID": f"{self.action_name}-v{self.version}",
                # Roboto's invocation context
                "ROBOTO_INVOCATION_ID": self.run_id,
                "ROBOTO_ORG_ID": self.project_id,
                "ROBOTO_DATASET_ID": f"ds_{self.project_id}_{self.environment}",
                "ROBOTO_INPUT_DIR": f"{base}/in",
                "ROBOTO_OUTPUT_DIR": f"{base}/out",
                "ROBOTO_ACTION_PARAMETERS_FILE": f"{base}/parameters.json",
                "ROBOTO_ACTION_TIMEOUT": str(max(1, int((self.deadline - time.time()) // 60))),
                "ROBOTO_API_KEY": "hatchway-placeholder-not-a-credential",
                "ROBOTO_SERVICE_ENDPOINT": "http://roboto.invalid",
            }
        )
        return env


# ---------------------------------------------------------------------------------------------
# output


# ---------------------------------------------------------------------------------------------
# outcome


@dataclass
class AttemptResult:
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
    #: why a sync answer was cut other than by ``max_stdout_bytes`` (it did not fit a Lambda's answer)
    stdout_problem: str | None = None
    platform_error: str | None = None
    #: the engine could not take the attempt (throttled, not ready, unreachable): 503, nothing ran
    unavailable: str | None = None


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


#: an absolute path inside a message (a mount source, a socket, a workspace): the host's layout
_HOST_PATH = re.compile(r"(?<![\w.])/+(?:[\w.@+-]+/)+")


def scrub_paths(message: str) -> str:
    """``message`` with each absolute path cut to its last name: an engine's reason may name the
    gateway's own folders, which neither the tenant reading the run nor the log needs."""
    return _HOST_PATH.sub("…/", message)


def judge(execution: AttemptResult, collector: OutputCollector, mode: Mode, limit_seconds: float) -> Verdict:
    """Map an attempt's end to the run's status and error, per the contract."""
    if execution.cancelled:
        return Verdict(RunStatus.TERMINATED, RunError("cancelled", "the run was cancelled"))
    if execution.unavailable:
        return Verdict(
            RunStatus.FAILED,
            RunError("unavailable", scrub_paths(execution.unavailable), new_exception_id(), 503),
            is_retryable=True,
        )
    if execution.platform_error:
        return Verdict(
            RunStatus.FAILED,
            RunError("platform", scrub_paths(execution.platform_error), new_exception_id(), 500),
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
            reason = OUT_OF_MEMORY
        elif execution.signal is not None:
            reason = f"killed by signal {execution.signal}"
        else:
            reason = f"exit code {execution.exit_code}"
        return _app_error(reason)
    if mode == Mode.SYNC:
        if collector.stdout_overflow:
            return _app_error(execution.stdout_problem or f"sync output over {collector.max_stdout_bytes // MIB} MiB")
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


def _exports(execution: AttemptResult, collector: OutputCollector) -> dict[str, Any]:
    if isinstance(execution.exports, dict):
        redacted: dict[str, Any] = collector.redactor.data(execution.exports)
        return redacted
    return {}


def _app_error(reason: str) -> Verdict:
    """An application error; ``reason`` is for the server log and the run record, never a 500 body."""
    return Verdict(RunStatus.FAILED, RunError("application", reason, new_exception_id(), 500), is_retryable=True)


def read_outputs(workspace: Workspace, execution: AttemptResult, mode: Mode = Mode.ASYNC) -> None:
    """Fill ``ret``/``exports`` of an attempt from ``out/``; a sync action's ``ret`` is its stdout,
    so in :attr:`Mode.SYNC` only the exports are read."""
    problem = None
    if mode == Mode.ASYNC:
        execution.ret, problem = workspace.read_json("result.json")
    execution.exports, problem2 = workspace.read_json("exports.json")
    execution.output_problem = problem or problem2


def adapter_payload(
    invocation: Invocation,
    *,
    argv: list[str] | None = None,
    workdir: str | None = None,
    data_dir_env: str | None = None,
    kill_grace_seconds: float = 1.0,
    max_log_bytes: int = 10 * MIB,
    max_stdout_bytes: int = 6 * MIB,
    timeout_margin: float = 0.5,
) -> dict[str, Any]:
    """The runtime adapter's invocation payload for ``invocation`` (see :mod:`hatchway.runtime.adapter`).

    The timeout is the time left minus ``timeout_margin``, so the adapter answers before the
    function's own limit cuts it off.
    """
    spec = invocation.spec
    # the data directory is made by the adapter: variables derived from it carry a token it replaces
    env = invocation.environment_for(data_dir_env or DATA_DIR_TOKEN)
    env.pop("HATCHWAY_DATA_DIR", None)
    secrets = list(invocation.redactor.secrets) if invocation.redactor else []
    return {
        "hatchway": 1,
        "config": invocation.config_document(),
        "argv": argv if argv is not None else spec.argv,
        "env": env,
        "workdir": workdir
        if workdir is not None
        else (spec.container_parameters.workdir if spec.container_parameters else None),
        "timeout_seconds": max(0.1, invocation.seconds_left - timeout_margin),
        "kill_grace_seconds": kill_grace_seconds,
        "max_log_bytes": max_log_bytes,
        "max_stdout_bytes": max_stdout_bytes,
        "redact": secrets,
        "data_dir_token": DATA_DIR_TOKEN,
    }


def result_from_outcome(outcome: dict[str, Any], collector: OutputCollector) -> AttemptResult:
    """Map the runtime adapter's outcome to an :class:`AttemptResult`, feeding its output to ``collector``."""
    if outcome.get("hatchway") != 1:
        return AttemptResult(platform_error="the runtime adapter answered in an unknown format")
    for kind, ts, msg in outcome.get("logs") or []:
        collector.add(str(kind), str(msg), int(ts))
    lines, size = outcome.get("logs_dropped") or [0, 0]
    collector.dropped_lines += int(lines)
    collector.dropped_bytes += int(size)
    cut_lines, cut_bytes = outcome.get("logs_cut") or [0, 0]
    if cut_lines:  # left out by the adapter so that its answer fits Lambda's response limit
        collector.system(
            f"log truncated: {cut_lines} lines ({cut_bytes} bytes) before the last ones were left out to fit "
            f"the function's answer in Lambda's {LAMBDA_RESPONSE_BYTES}-byte limit"
        )
    stdout = outcome.get("stdout") or ""
    if stdout:
        collector.feed("stdout", stdout.encode())
    stdout_problem = None
    if outcome.get("stdout_cut"):
        stdout_problem = (
            f"sync output truncated: its {outcome['stdout_cut']} bytes do not fit in Lambda's "
            f"{LAMBDA_RESPONSE_BYTES}-byte answer"
        )
        collector.system(stdout_problem)
    if outcome.get("stdout_truncated"):
        collector.stdout_overflow = True
    if outcome.get("start_error"):
        collector.system(f"cannot start the action: {outcome['start_error']}")
    return AttemptResult(
        exit_code=outcome.get("exit_code"),
        signal=outcome.get("signal"),
        timed_out=bool(outcome.get("timed_out")),
        oom=bool(outcome.get("oom")),
        duration_ms=int(outcome.get("duration_ms") or 0),
        ret=outcome.get("result"),
        exports=outcome.get("exports"),
        output_problem=outcome.get("output_problem"),
        stdout_problem=stdout_problem,
    )
