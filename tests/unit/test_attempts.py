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
