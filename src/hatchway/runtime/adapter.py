"""The runtime adapter: the action's side of the contract inside a container.

In a container Lambda (``awslambdaric`` with ``hatchway.runtime.adapter.lambda_handler`` as its
handler) or under the Lambda Runtime Interface Emulator, the gateway invokes the function with an
*invocation payload*; the adapter writes the private data directory, runs the action's command as
a subprocess under the deadline (:func:`hatchway.runtime.spawn.spawn`), and answers an *outcome*
that the gateway maps to the API's answers exactly as it does for a host process.

Payload (``"hatchway": 1``)::

    {"hatchway": 1, "config": {config.json}, "argv": [...], "env": {...}, "workdir": "/action"|null,
     "timeout_seconds": 29.0, "kill_grace_seconds": 1.0, "max_log_bytes": ..., "max_stdout_bytes": ...,
     "redact": [secret values to hide, when the gateway decrypted them],
     "data_dir_token": "${HATCHWAY_DATA_DIR}" (optional: replaced by the data directory in env values),
     "max_outcome_bytes": ... (optional: the largest outcome; Lambda's response limit by default)}

Outcome::

    {"hatchway": 1, "exit_code": 0, "signal": null, "timed_out": false, "duration_ms": 12,
     "start_error": null, "stdout": "..." (sync actions), "stdout_truncated": false,
     "logs": [[k, ts, msg], ...], "logs_dropped": [lines, bytes],
     "result": ..., "exports": ..., "output_problem": null, "oom": false,
     "logs_cut": [lines, bytes], "stdout_cut": bytes (only when something did not fit)}

``oom`` is true when the kernel's OOM killer ended the action (the container's memory cgroup
counted a kill while it ran); where no cgroup is visible it stays false.

The outcome fits Lambda's synchronous response limit (:data:`LAMBDA_RESPONSE_BYTES`, as JSON) -
the stdout and logs the contract allows (6 MiB + 10 MiB) would not, and a function error would
hide a valid answer. What does not fit is left out, each with its marker: log lines first (from
the middle, keeping the first lines and the last :data:`KEPT_LAST_LINES`, which carry a user
error's message; ``"logs_cut": [lines, bytes]``) - unless that cannot make room: then
``result``/``exports`` go first (``output_problem`` says so), then stdout (``"stdout_cut": bytes``,
with ``stdout_truncated``: the sync output does not fit).

Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hatchway.runtime.contract import (
    LAMBDA_RESPONSE_BYTES,
    MIB,
    TAIL_LINES,
    Mode,
    OutputCollector,
    Workspace,
    encoded_size,
    leave_out,
)
from hatchway.runtime.redact import Redactor
from hatchway.runtime.spawn import enable_subreaper, spawn

PROTOCOL = 1
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
#: log lines at the end of an outcome kept while lines before them are left out to fit
KEPT_LAST_LINES = TAIL_LINES


def invoke(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one invocation described by ``payload`` and describe how it ended."""
    if payload.get("hatchway") != PROTOCOL:
        return _refused(f"unsupported invocation protocol {payload.get('hatchway')!r}")
    config = payload["config"]
    run = config.get("run") or {}
    mode = Mode.ASYNC if config.get("action", "run") == "run" else Mode.SYNC
    argv = [str(part) for part in payload.get("argv") or []]
    if not argv:
        return _refused("the invocation names no command")
    root = Path(payload.get("data_root") or os.environ.get("HATCHWAY_ADAPTER_ROOT") or tempfile.gettempdir())
    workspace = Workspace(root, f"hatchway-{run.get('id', 'run')}-{run.get('attempt', 1)}-{os.getpid()}")
    seconds = float(payload.get("timeout_seconds") or 30.0)
    grace = float(payload.get("kill_grace_seconds", 1.0))
    collector = OutputCollector(
        mode,
        Redactor(payload.get("redact") or (), deadline=time.monotonic() + seconds + grace),
        max_log_bytes=int(payload.get("max_log_bytes") or 10 * MIB),
        max_stdout_bytes=int(payload.get("max_stdout_bytes") or 6 * MIB),
    )
    started = time.monotonic()
    try:
        workspace.create(config)
    except OSError as exc:
        return _refused(f"could not prepare the workspace ({exc.strerror})")
    try:
        env = {str(k): str(v) for k, v in (payload.get("env") or {}).items()}
        token = payload.get("data_dir_token")
        if token:  # variables derived from the data directory (KBC_DATADIR, ROBOTO_INPUT_DIR, ...)
            env = {key: value.replace(str(token), str(workspace.path)) for key, value in env.items()}
        env["HATCHWAY_DATA_DIR"] = str(workspace.path)
        env.setdefault("PATH", os.environ.get("PATH") or DEFAULT_PATH)
        env.setdefault("HOME", str(workspace.path))
        env.setdefault("TMPDIR", str(workspace.tmp))
        env.setdefault("LANG", "C.UTF-8")
        env.setdefault("PYTHONUNBUFFERED", "1")
        workdir = payload.get("workdir") or None
        oom_kills = _oom_kills()
        ended = spawn(
            argv,
            cwd=workdir or workspace.path,
            env=env,
            seconds=seconds,
            on_output=collector.feed,
            kill_grace=grace,
        )
        collector.close()
        outcome: dict[str, Any] = {
            "hatchway": PROTOCOL,
            "exit_code": ended.exit_code,
            "signal": ended.signal,
            "timed_out": ended.timed_out,
            "start_error": ended.start_error,
            "stdout": collector.stdout.decode("utf-8", errors="replace") if mode == Mode.SYNC else "",
            "stdout_truncated": collector.stdout_overflow,
            "logs": [[e.k, e.ts, e.msg] for e in collector.entries if e.k != "system"],
            "logs_dropped": [collector.dropped_lines, collector.dropped_bytes],
            "result": None,
            "exports": None,
            "output_problem": None,
            "oom": ended.signal == 9 and _oom_kills() > oom_kills,
        }
        if ended.exit_code == 0 and not ended.timed_out:
            outcome["result"], problem = workspace.read_json("result.json")
            outcome["exports"], problem2 = workspace.read_json("exports.json")
            outcome["output_problem"] = problem or problem2
        outcome["duration_ms"] = int((time.monotonic() - started) * 1000)
        return fit_outcome(outcome, int(payload.get("max_outcome_bytes") or LAMBDA_RESPONSE_BYTES))
    finally:
        workspace.remove()


def fit_outcome(outcome: dict[str, Any], limit: int = LAMBDA_RESPONSE_BYTES) -> dict[str, Any]:
    """``outcome`` within ``limit`` bytes of JSON: log lines left out, each thing marked (see the
    module's docstring). When even the whole log would not make room, the outputs go, then the
    answer - before the log, which is then cut only as much as the rest needs."""
    excess = encoded_size(outcome) - limit
    if excess <= 0:
        return outcome
    logs: list[Any] = outcome["logs"]
    sizes = [encoded_size(entry) + 2 for entry in logs]  # each with its separator
    outputs = encoded_size([outcome.get("result"), outcome.get("exports")])
    if excess > sum(sizes) and outputs > 12:  # not even without the log: the outputs go (12: [null, null])
        excess -= outputs - 12
        outcome.update(
            result=None, exports=None,
            output_problem=f"out/result.json and out/exports.json do not fit in the {limit}-byte answer of a Lambda",
        )  # fmt: skip
    stdout = outcome.get("stdout") or ""
    if excess > sum(sizes) and stdout:  # still not: the answer goes too
        excess -= encoded_size(stdout) - 2
        outcome.update(stdout="", stdout_truncated=True, stdout_cut=len(stdout.encode()))
    cut = leave_out(len(logs), excess, sizes.__getitem__, KEPT_LAST_LINES)
    if cut:
        outcome["logs"] = [entry for index, entry in enumerate(logs) if index not in cut]
        outcome["logs_cut"] = [len(cut), sum(len(str(logs[index][2]).encode()) + 1 for index in cut)]
    return outcome


#: where a container sees the OOM kills of its own memory cgroup (v2, then v1)
OOM_COUNTERS = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")


def _oom_kills() -> int:
    """How many processes the OOM killer ended in this cgroup so far (0 if it cannot be seen)."""
    for path in OOM_COUNTERS:
        try:
            with open(path, encoding="ascii") as handle:
                for line in handle:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return 0


def _refused(reason: str) -> dict[str, Any]:
    return {"hatchway": PROTOCOL, "exit_code": None, "start_error": reason, "logs": [], "duration_ms": 0}


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Entry point for ``awslambdaric`` / the Lambda runtime: one invocation per event."""
    enable_subreaper()
    return invoke(event)


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - exercised inside containers
    """``python -m hatchway.runtime.adapter < payload.json``: run one invocation, print its outcome.

    ``python -m hatchway.runtime.adapter --run RUN_ID`` is the entry of a Batch job or ECS task: one
    attempt of a stored run (:func:`hatchway.runtime.remote.main`). That path reads the store and
    decrypts with KMS, so it needs the whole package with its ``aws`` extra, unlike the Lambda path
    (without it, it says so in one line and exits 1).
    """
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--run"]:
        if len(args) != 2 or not args[1].startswith("run_"):
            print("usage: python -m hatchway.runtime.adapter --run RUN_ID", file=sys.stderr)
            sys.exit(2)
        from hatchway.runtime import remote

        sys.exit(remote.main(args[1]))
    outcome = invoke(json.load(sys.stdin))
    json.dump(outcome, sys.stdout)


if __name__ == "__main__":  # pragma: no cover
    main()
