"""How an attempt's end becomes a run's status: user messages and verdicts (domain/attempts.py)."""

from __future__ import annotations

from hatchway.domain.attempts import AttemptResult, judge, user_message
from hatchway.domain.runs import Mode, RunStatus
from hatchway.runtime.contract import OutputCollector


def test_user_message_cuts_stack_traces() -> None:
    collector = OutputCollector(Mode.ASYNC)
    collector.feed(
        "stderr",
        b"Traceback (most recent call last):\n"
        b'  File "/srv/x.py", line 3, in <module>\n'
        b"    boom()\n"
        b"ValueError: the threshold must be positive\n",
    )
    collector.close()
    assert user_message(collector) == "ValueError: the threshold must be positive"


def test_user_message_falls_back_to_stdout() -> None:
    collector = OutputCollector(Mode.ASYNC)
    collector.feed("stdout", b"wrong password\n")
    collector.close()
    assert user_message(collector) == "wrong password"


def judged(execution: AttemptResult, mode: Mode = Mode.SYNC, stdout: bytes = b"") -> tuple[RunStatus, str | None, bool]:
    collector = OutputCollector(mode)
    collector.feed("stdout", stdout)
    collector.close()
    verdict = judge(execution, collector, mode, 30)
    return verdict.status, verdict.error.kind if verdict.error else None, verdict.is_retryable


def test_verdicts() -> None:
    assert judged(AttemptResult(exit_code=0), stdout=b' {"ok": true} \n') == (RunStatus.SUCCESSFUL, None, False)
    assert judged(AttemptResult(exit_code=0), stdout=b"not json") == (RunStatus.FAILED, "application", True)
    assert judged(AttemptResult(exit_code=0), stdout=b"{} {}") == (RunStatus.FAILED, "application", True)
    assert judged(AttemptResult(exit_code=1)) == (RunStatus.FAILED, "user", False)
    assert judged(AttemptResult(exit_code=2)) == (RunStatus.FAILED, "application", True)
    assert judged(AttemptResult(exit_code=137, signal=9)) == (RunStatus.FAILED, "application", True)
    assert judged(AttemptResult(timed_out=True)) == (RunStatus.FAILED, "timeout", True)
    assert judged(AttemptResult(cancelled=True)) == (RunStatus.TERMINATED, "cancelled", False)
    assert judged(AttemptResult(exit_code=0, output_problem="out/result.json is not valid JSON"), Mode.ASYNC) == (
        RunStatus.FAILED,
        "application",
        True,
    )
    assert judged(AttemptResult(exit_code=0, exports=[1]), Mode.ASYNC)[1] == "application"


def test_oom_is_named() -> None:
    collector = OutputCollector(Mode.ASYNC)
    verdict = judge(AttemptResult(exit_code=137, oom=True), collector, Mode.ASYNC, 30)
    assert verdict.error is not None and verdict.error.message == "out of memory"


def test_a_sync_calls_platform_failure_answers_as_one() -> None:
    from types import SimpleNamespace
    from typing import Any

    from hatchway.domain.runs import RunError
    from hatchway.domain.spec import ActionSpec
    from hatchway.errors import ExecutionFailed, Unavailable
    from hatchway.services.attempts import platform_answer

    spec = ActionSpec.model_validate({"name": "a", "image_uri": "x/y:1", "compute_requirements": {"memory": 2048}})
    run: Any = SimpleNamespace(id="run_1", project_id="proj_1")

    def answer(kind: str, message: str) -> Any:
        return platform_answer(run, RunError(kind, message, "exc_1"), spec, 4.5)

    # the engine down: 503, Retry-After from the platform's retry pause, no engine detail
    down = answer("unavailable", "the Docker engine does not answer (unix:///x)")
    assert isinstance(down, Unavailable) and down.retry_after == 5
    assert down.message == "the Docker engine does not answer; nothing was started, try again shortly"
    # another platform failure: 500 that says the platform failed, quoting the exception id
    failed = answer("platform", "the engine could not start the container (mount /tmp/x: denied)")
    assert isinstance(failed, ExecutionFailed) and failed.exception_id == "exc_1"
    assert failed.message.startswith("the platform could not run the action: the engine could not start the container;")
    assert "/tmp/x" not in failed.message and "exc_1 when you report it" in failed.message
    # out of memory: 500 that says so, with the limit
    oom = answer("application", "out of memory")
    assert isinstance(oom, ExecutionFailed) and "ran out of memory" in oom.message and "2048 MiB" in oom.message
    # the action's own crash stays an application error (None: the caller raises ActionAppError)
    assert answer("application", "exit code 3") is None


def test_a_platform_failure_names_no_host_path() -> None:
    # an engine's reason may name the gateway's own folders (a mount source, its socket)
    reason = (
        'the engine could not start the container (error mounting "/var/tmp/hatchway-work-0-ab12/run_1/in" '
        "to rootfs at /work/in: unix:///run/hatchway/docker.sock refused)"
    )
    collector = OutputCollector(Mode.SYNC)
    for execution in (AttemptResult(platform_error=reason), AttemptResult(unavailable=reason)):
        verdict = judge(execution, collector, Mode.SYNC, 30)
        assert verdict.error is not None
        message = verdict.error.message
        assert "/var/tmp" not in message and "hatchway-work" not in message and "/run/hatchway" not in message
        assert message == (
            'the engine could not start the container (error mounting "…/in" to rootfs at …/in: '
            "unix:…/docker.sock refused)"
        )
