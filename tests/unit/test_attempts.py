"""The contract's output rules: lines, caps, redaction, user messages and verdicts."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

from hatchway.domain.attempts import AttemptResult, judge, user_message
from hatchway.domain.runs import Mode, RunStatus
from hatchway.runtime.contract import OutputCollector
from hatchway.runtime.redact import HIDDEN, Redactor

SECRET = "s3cr3t-Value/+="


def test_redactor_hides_every_spelling() -> None:
    redactor = Redactor([SECRET])
    for form in (
        SECRET,
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="),
        json.dumps(SECRET)[1:-1],
        quote(SECRET, safe=""),
    ):
        assert redactor.text(f"before {form} after") == f"before {HIDDEN} after"
    assert redactor.data({"k": [SECRET, 1], SECRET: "v"}) == {"k": [HIDDEN, 1], HIDDEN: "v"}


def test_json_escaped_secrets_are_hidden_however_the_action_serialises_them() -> None:
    # Given a secret with characters JSON escapes: a quote, a backslash, a tab and non-ASCII text
    secret = 'pa"ss\\w\tord-\u00e4\u6f22'
    redactor = Redactor([secret])
    # Python's json.dumps (ASCII-only), JavaScript's JSON.stringify (non-ASCII kept), and the raw value
    for form in (json.dumps(secret), json.dumps(secret, ensure_ascii=False), secret):
        # Then none of them shows
        assert secret not in redactor.text(form)
        assert HIDDEN in redactor.text(form), form


def test_short_values_are_not_redacted() -> None:
    assert Redactor(["abc"]).text("abc") == "abc"
    assert not Redactor([])


def test_secret_split_across_writes_is_hidden() -> None:
    collector = OutputCollector(Mode.ASYNC, Redactor([SECRET]))
    collector.feed("stdout", b"token=" + SECRET[:5].encode())
    collector.feed("stdout", SECRET[5:].encode() + b" end\n")
    collector.close()
    assert [e.msg for e in collector.entries] == [f"token={HIDDEN} end"]


def test_lines_and_partial_last_line() -> None:
    collector = OutputCollector(Mode.ASYNC)
    collector.feed("stdout", b"one\ntwo\r\nthr")
    collector.feed("stderr", b"err\n")
    collector.feed("stdout", b"ee")
    collector.close()
    assert [(e.k, e.msg) for e in collector.entries] == [
        ("stdout", "one"),
        ("stdout", "two"),
        ("stderr", "err"),
        ("stdout", "three"),
    ]


def test_log_cap_keeps_the_head_and_says_what_was_dropped() -> None:
    collector = OutputCollector(Mode.ASYNC, max_log_bytes=100)
    for index in range(50):
        collector.feed("stdout", f"line {index:04d}\n".encode())
    collector.close()
    kept = [e for e in collector.entries if e.k == "stdout"]
    assert 0 < len(kept) < 50 and kept[0].msg == "line 0000"
    marker = collector.entries[-1]
    assert marker.k == "system" and f"{50 - len(kept)} lines" in marker.msg


def test_sync_stdout_is_the_answer_not_a_log() -> None:
    collector = OutputCollector(Mode.SYNC, max_stdout_bytes=10)
    collector.feed("stdout", b'{"a": 1}')
    collector.feed("stdout", b"0123456789")
    collector.close()
    assert collector.entries == [] and collector.stdout_overflow


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
