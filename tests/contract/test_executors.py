"""The executor contract suite: one table of behaviours, run over every engine.

Each case runs ``tests/actions/behave.py`` (a ``behaviour`` parameter picks what it does) as a sync
call, a run, or both, on each engine of :mod:`tests.contract.engines`, and checks what the contract
promises: exit codes, signals, the deadline and the whole tree's end, invalid sync answers, output
caps, redaction, cancel, OOM, what the action is given. A combination an engine cannot have is
skipped with its reason. ``process`` runs in ``scripts/test --quick``; ``lambda``, ``batch`` and
``ecs`` run on moto (``aws``); ``docker`` and ``lambda-local`` need a Docker engine (``docker``).
The API-level assertions for ``process`` stay in tests/functional/test_api.py (the HTTP mapping).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hatchway.domain.runs import Mode
from hatchway.runtime.redact import HIDDEN
from tests.contract.engines import HARNESSES, Harness, Outcome, WarmHarness
from tests.helpers import processes_with, wait_until

SECRET = "s3cr3t/Value+with spaces&more"  # every spelling differs: raw, base64, JSON, URL
MIB = 1024 * 1024


def marker() -> str:
    """A sleep length no other process on the machine has (it names the action's processes)."""
    return f"{300 + os.getpid() % 97}.{time.monotonic_ns() % 10_000_000}"


@dataclass
class Case:
    id: str
    behaviour: str
    modes: tuple[Mode, ...]
    expect: Callable[[Outcome, Mode], None]
    params: dict[str, Any] = field(default_factory=dict)
    #: settings for the engine (output caps)
    limits: dict[str, Any] = field(default_factory=dict)
    #: the request's own fields (timeout_seconds, retries)
    request: dict[str, Any] = field(default_factory=dict)
    #: fields of the action's spec
    spec: dict[str, Any] = field(default_factory=dict)
    #: engine -> why the case cannot run there
    unsupported: dict[str, str] = field(default_factory=dict)
    #: marks a case whose processes outlive a careless engine (a tree to look for afterwards)
    tree: bool = False
    #: cancels the run while it runs
    cancel: bool = False
    #: engine or sandbox level -> a known deviation from the contract (expected to fail until fixed)
    known: dict[str, str] = field(default_factory=dict)


# ---- expectations ---------------------------------------------------------------------------


def succeeded(outcome: Outcome, mode: Mode) -> None:
    assert outcome.status == "SUCCESSFUL", outcome
    assert outcome.error is None and outcome.code is None


def application_error(outcome: Outcome, mode: Mode, reason: str | None = None) -> None:
    assert outcome.status == "FAILED", outcome
    assert outcome.error is not None and outcome.error.kind == "application", outcome.error
    assert outcome.error.exception_id and outcome.error.code == 500
    if reason is not None:
        assert reason in outcome.error.message, outcome.error.message
    if mode == Mode.SYNC:
        # the caller gets 500 with the exception id and a generic message: no detail of the action
        assert outcome.code == 500 and outcome.body["error"] == "Application error"
        assert outcome.body["exceptionId"] == outcome.error.exception_id
        assert outcome.error.exception_id in outcome.body["message"]
        if reason is not None:
            assert reason not in outcome.body["message"]


def x01(outcome: Outcome, mode: Mode) -> None:
    succeeded(outcome, mode)
    assert outcome.ret["echo"] == {"behaviour": "ok", "who": "ada"}
    assert ("stderr", "starting check") in outcome.logs
    assert all(kind != "stdout" for kind, _ in outcome.logs)  # a sync action's stdout is its answer


def x02(outcome: Outcome, mode: Mode) -> None:
    succeeded(outcome, mode)
    assert outcome.ret["echo"] == {"behaviour": "ok", "who": "ada"}
    assert outcome.exports == {"attempt": 1, "action": "run"}
    # each stream in its order; the order across the two streams is the engine's: a container's
    # stdout and stderr travel through the engine separately (Docker copies each on its own), so a
    # line written to stderr just before one to stdout can arrive second. The process engine reads
    # both pipes itself and keeps the order (tests/functional/test_api.py asserts it).
    assert [message for kind, message in outcome.logs if kind == "stderr"] == ["starting run"]
    assert [message for kind, message in outcome.logs if kind == "stdout"] == ["working on it"]
    assert {kind for kind, _ in outcome.logs} <= {"stderr", "stdout", "system"}


def x03(outcome: Outcome, mode: Mode) -> None:
    assert outcome.status == "FAILED" and outcome.error is not None
    assert (outcome.error.kind, outcome.error.code) == ("user", 400)
    message = outcome.error.message
    assert message.splitlines()[-1] == "ValueError: the input has no column 'id'"
    assert 'File "' not in message and "Traceback" not in message
    assert outcome.attempts == 1  # a user error is never retried
    if mode == Mode.SYNC:
        assert outcome.code == 400 and outcome.body["message"] == message


def x04(outcome: Outcome, mode: Mode) -> None:
    application_error(outcome, mode, "exit code 3")
    if mode == Mode.ASYNC:
        assert outcome.attempts == 2  # retried to its budget (retries=1)


def x05(outcome: Outcome, mode: Mode) -> None:
    application_error(outcome, mode, "killed by signal 9")


def x06(outcome: Outcome, mode: Mode) -> None:
    assert outcome.status == "FAILED" and outcome.error is not None, outcome
    assert (outcome.error.kind, outcome.error.code) == ("timeout", 504)
    if mode == Mode.SYNC:
        assert outcome.code == 504 and outcome.body["error"] == "Timeout"


def x07(outcome: Outcome, mode: Mode) -> None:
    application_error(outcome, mode, "did not print one JSON document")


def x08(outcome: Outcome, mode: Mode) -> None:
    application_error(outcome, mode, "sync output over 1 MiB")


def x09(outcome: Outcome, mode: Mode) -> None:
    succeeded(outcome, mode)
    lines = [msg for kind, msg in outcome.logs if kind == "stdout"]
    assert 0 < len(lines) < 1500  # capped: 2,000 lines of 1 KiB went past a 1 MiB log
    [marker] = [msg for kind, msg in outcome.logs if kind == "system" and "log truncated" in msg]
    dropped = int(marker.split("log truncated: ")[1].split(" lines")[0])
    assert dropped == 2000 - len(lines) and "bytes) over the 1 MiB limit were dropped" in marker


def x10(outcome: Outcome, mode: Mode) -> None:
    text = outcome.text()
    import base64
    import json
    from urllib.parse import quote

    for form in (SECRET, base64.b64encode(SECRET.encode()).decode(), json.dumps(SECRET)[1:-1], quote(SECRET, safe="")):
        assert form not in text, f"{form!r} leaked"
    assert HIDDEN in text


def x10_user_error(outcome: Outcome, mode: Mode) -> None:
    assert outcome.error is not None and outcome.error.kind == "user"
    assert HIDDEN in outcome.error.message
    x10(outcome, mode)


def x11(outcome: Outcome, mode: Mode) -> None:
    assert outcome.status == "TERMINATED", outcome
    assert outcome.error is not None and outcome.error.kind == "cancelled"


def x12(outcome: Outcome, mode: Mode) -> None:
    application_error(outcome, Mode.ASYNC, "out of memory")  # the record's side; the answer differs:
    if mode == Mode.SYNC:
        # not the action's crash: the caller is told it ran out of memory (500, the exceptionId quoted)
        assert outcome.code == 500 and outcome.body["error"] == "Application error"
        assert outcome.body["exceptionId"] == outcome.error.exception_id
        assert outcome.body["message"].startswith("the action ran out of memory (its limit, compute_requirements.")
        assert outcome.error.exception_id in outcome.body["message"]


def x13(outcome: Outcome, mode: Mode) -> None:
    succeeded(outcome, mode)
    ret = outcome.ret
    assert ret["secret_matches"] is True  # decrypted for the action, though stored encrypted
    assert ret["behaviour"] == "config"  # given, and defaults applied for the others
    assert {"action", "parameters"} <= set(ret["keys"])
    if mode == Mode.ASYNC:
        assert {"id", "attempt"} <= set(ret["run"])
    assert not Path(ret["config_file"]).exists()  # the data directory goes with the attempt


def x14(outcome: Outcome, mode: Mode) -> None:
    succeeded(outcome, mode)
    names = set(outcome.ret["env"])
    assert {"HATCHWAY_DATA_DIR", "HATCHWAY_RUN_ID", "KBC_DATADIR", "KBC_RUNID", "ROBOTO_INVOCATION_ID"} <= names
    assert not {"behaviour", "who", "#secret", "secret"} & {name.lower() for name in names}


def x15(outcome: Outcome, mode: Mode) -> None:
    application_error(outcome, mode, "out/exports.json must hold a JSON object")


def x16(outcome: Outcome, mode: Mode) -> None:
    application_error(outcome, mode)
    assert any("cannot start the action" in msg for _, msg in outcome.logs), outcome.logs
    # the action's own command is named; nothing of the sandbox that failed to start it
    assert any("'/nonexistent/hatchway-action' was not found" in msg for _, msg in outcome.logs), outcome.logs
    assert "bwrap" not in outcome.text()


SYNC, RUN = (Mode.SYNC,), (Mode.ASYNC,)
BOTH = (Mode.SYNC, Mode.ASYNC)
NO_SIGNAL_ON_LAMBDA = "an Invoke's function error is the exit path X04 covers"
ONLY_SYNC = "a container Lambda answers sync calls only (runs of lambda-local go to docker)"
ONLY_RUNS = "Batch and ECS run async runs only"
NO_CANCEL = "an Invoke cannot be cancelled"
ONLY_WARM_SYNC = "warm servers answer sync calls only; runs start cold (the process engines cover them)"
NO_MEMORY_LIMIT = {
    "process": "an unconfined host process has no memory limit",
    "process-confined": "no cgroups here: nothing enforces compute_requirements.memory on host processes",
    "process-warm": "no cgroups here: nothing enforces compute_requirements.memory on a warm call",
    "process-warm-none": "an unconfined host process has no memory limit",
    "lambda": "moto runs no function: nothing enforces its memory",
    "lambda-local": "not measured here for warm container Lambdas (docker covers the container limit)",
    "batch": "moto runs no job: the container side here is a host process",
    "ecs": "moto runs no task: the container side here is a host process",
}

CASES = [
    Case("X01", "ok", SYNC, x01, {"who": "ada"}),
    Case("X02", "ok", RUN, x02, {"who": "ada"}),
    Case("X03", "traceback", BOTH, x03),
    Case("X04", "app_error", BOTH, x04, request={"retries": 1}),
    Case("X05", "kill_self", BOTH, x05, unsupported={"lambda": NO_SIGNAL_ON_LAMBDA}),
    Case("X06", "stubborn_tree", BOTH, x06, request={"timeout_seconds": 1}, tree=True),
    Case("X07", "invalid_json", SYNC, x07),
    Case("X08", "big_stdout", SYNC, x08, {"count": str(MIB + MIB // 2)}, limits={"max_sync_stdout_bytes": MIB}),
    Case("X09", "flood", RUN, x09, {"count": "2000"}, limits={"max_log_bytes": MIB}),
    Case("X10", "secret_everywhere", BOTH, x10, {"#secret": SECRET}),
    Case("X10u", "secret_everywhere", BOTH, x10_user_error, {"#secret": SECRET, "code": "1"}),
    Case("X11", "stubborn_tree", RUN, x11, tree=True, cancel=True, unsupported={"lambda": NO_CANCEL}),
    Case("X12", "allocate", BOTH, x12, {"count": "96"}, spec={"compute_requirements": {"vCPU": 512, "memory": 1024}}),
    Case("X13", "config", BOTH, x13, {"who": "ada", "#secret": "ada-secret-value"}),
    Case("X14", "env", BOTH, x14, {"who": "ada", "#secret": "ada-secret-value"}),
    Case("X15", "exports_list", RUN, x15),
    Case("X16", "ok", BOTH, x16, spec={"container_parameters": {"entry_point": ["/nonexistent/hatchway-action"]}}),
    Case("X17", "silent", SYNC, x07),
]

# ---- engines --------------------------------------------------------------------------------

ENGINES = [
    "process",
    "process-confined",
    "process-warm",
    "process-warm-none",
    pytest.param("lambda", marks=pytest.mark.aws),
    pytest.param("batch", marks=pytest.mark.aws),
    pytest.param("ecs", marks=pytest.mark.aws),
    pytest.param("docker", marks=pytest.mark.docker),
    pytest.param("lambda-local", marks=pytest.mark.docker),
]
MODES = {"lambda": SYNC, "lambda-local": SYNC, "batch": RUN, "ecs": RUN}
MODES |= {"process-warm": SYNC, "process-warm-none": SYNC}
#: cases whose sync call cannot run warm and must fall back to a cold start (its action cannot start)
COLD_ON_WARM = {"X16"}


@pytest.fixture(scope="module")
def moto_engines(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """moto with what template.yaml makes, once for the module; clients on one counted session."""
    import boto3

    from hatchway.aws.clients import AwsClients
    from tests.awsmock import REGION, CallCounter, answer_with_adapter, make_infrastructure

    request.getfixturevalue("moto")
    session = boto3.session.Session(region_name=REGION)
    counter = CallCounter(session)
    answer_with_adapter(counter)
    yield {"infrastructure": make_infrastructure(session, "hwcontract"), "aws": AwsClients(REGION, None, session)}


@pytest.fixture(scope="module")
def docker_engines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The Docker engine of HATCHWAY_TEST_DOCKER_HOST with the base image built (once per data root),
    and the behaving action's build context: the base image plus behave.py."""
    from hatchway.errors import Unavailable
    from hatchway.executors.containers.client import docker_client
    from hatchway.executors.containers.images import build_base
    from tests.functional.actions import BEHAVE

    host = os.environ["HATCHWAY_TEST_DOCKER_HOST"]
    client = docker_client(host, timeout=300)
    try:
        base = build_base(client, "3.11")
    except Unavailable as exc:
        pytest.fail(f"the base image could not be built: {exc.message}")
    finally:
        client.close()
    action_dir = tmp_path_factory.mktemp("behave-image")
    (action_dir / "behave.py").write_text(Path(BEHAVE).read_text())
    (action_dir / "Dockerfile").write_text(f"FROM {base}\nWORKDIR /action\nCOPY behave.py ./\n")
    return {"docker_host": host, "rie": os.environ.get("HATCHWAY_LAMBDA_RIE"), "action_dir": action_dir}


def harness_for(engine: str, case: Case, mode: Mode, tmp_path: Path, request: pytest.FixtureRequest) -> Harness:
    if engine in ("docker", "lambda-local"):
        if not os.environ.get("HATCHWAY_TEST_DOCKER_HOST"):
            pytest.skip("no Docker engine (HATCHWAY_TEST_DOCKER_HOST is not set)")
        if engine == "lambda-local" and not os.environ.get("HATCHWAY_LAMBDA_RIE"):
            pytest.skip("no Lambda Runtime Interface Emulator (HATCHWAY_LAMBDA_RIE is not set)")
    if mode not in MODES.get(engine, BOTH):
        skips = {"lambda": ONLY_SYNC, "lambda-local": ONLY_SYNC, "batch": ONLY_RUNS, "ecs": ONLY_RUNS}
        pytest.skip(skips.get(engine, ONLY_WARM_SYNC))
    if engine in case.unsupported:
        pytest.skip(case.unsupported[engine])
    context: dict[str, Any] = {}
    if engine in ("lambda", "batch", "ecs"):
        context = request.getfixturevalue("moto_engines")
    elif engine in ("docker", "lambda-local"):
        context = request.getfixturevalue("docker_engines")
    try:
        harness = HARNESSES[engine](tmp_path / "home", case.limits, context)
    except Exception as exc:  # the machine offers no confinement level
        if engine not in ("process-confined", "process-warm"):
            raise
        pytest.skip(f"no confinement level here ({exc})")
    return harness


CASE_MODES = [
    pytest.param(case, mode, id=f"{case.id}-{'sync' if mode == Mode.SYNC else 'run'}")
    for case in CASES
    for mode in case.modes
]


@pytest.mark.parametrize(("case", "mode"), CASE_MODES)
@pytest.mark.parametrize("engine", ENGINES)
def test_the_contract(engine: str, case: Case, mode: Mode, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if case.id == "X12" and not _memory_limited(engine):
        pytest.skip(NO_MEMORY_LIMIT[engine])
    harness = harness_for(engine, case, mode, tmp_path, request)
    level = getattr(getattr(harness, "sandbox", None), "kind", None)
    known = case.known.get(engine) or case.known.get(str(level))
    if known:
        request.applymarker(pytest.mark.xfail(reason=known, strict=True))
    try:
        # Given the behaving action on this engine
        harness.register(**case.spec)
        params = {"behaviour": case.behaviour, **case.params}
        seconds = ""
        if case.tree:
            seconds = marker()
            params["seconds"] = seconds
        # When it is called or run
        if mode == Mode.SYNC:
            outcome = harness.sync(params, **case.request)
        else:
            during = _cancel_once_started(harness, seconds) if case.cancel else None
            outcome = harness.run(params, during, **case.request)
        # Then it ends as the contract says
        case.expect(outcome, mode)
        if isinstance(harness, WarmHarness):  # and it really ran warm (or, where it cannot, cold)
            assert harness.warm_calls == (0 if case.id in COLD_ON_WARM else outcome.attempts), harness.warm_calls
        if case.tree:  # and nothing of the action outlives it (SIGKILL after the grace)
            wait_until(lambda: not processes_with(f"sleep {seconds}"), timeout=10, what="the action's tree to end")
    finally:
        harness.close()


def _memory_limited(engine: str) -> bool:
    """Whether ``engine`` enforces ``compute_requirements.memory`` here (cgroups for host processes)."""
    if engine not in ("process-confined", "process-warm"):
        return engine == "docker"
    from hatchway.executors.sandbox import Cgroups, cgroup_owner_name

    return Cgroups.detect(cgroup_owner_name()) is not None


def _cancel_once_started(harness: Harness, seconds: str) -> Callable[[str], None]:
    def cancel(run_id: str) -> None:
        from tests.contract.engines import ADMIN, ENV, P

        wait_until(lambda: processes_with(f"sleep {seconds}"), timeout=30, what="the run's action to start")
        harness.services.runs.cancel(ADMIN, P, ENV, run_id)

    return cancel
