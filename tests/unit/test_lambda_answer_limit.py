"""Lambda's synchronous response limit (6,291,556 bytes of JSON) on the first hop: the runtime
adapter's outcome, as the container Lambda answers it. The contract allows 6 MiB of sync stdout
and 10 MiB of logs; the adapter leaves out what does not fit, marked, and never answers more.
The second hop (the API function's answer) is in tests/functional/test_aws_lambda.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hatchway.domain.attempts import judge, result_from_outcome
from hatchway.runtime import adapter
from hatchway.runtime.contract import LAMBDA_RESPONSE_BYTES, MIB, Mode, OutputCollector, encoded_size

#: prints ``lines`` stderr lines of ``width`` copies of ``char`` (numbered), then a JSON answer of
#: ``ret`` copies of ``fill``; exits ``code``
SCRIPT = """import json, sys
lines, width, char, ret, fill, code = sys.argv[1:]
for i in range(int(lines)):
    print(f"{i:06d} " + char * int(width), file=sys.stderr)
print("the last line", file=sys.stderr)
print(json.dumps({"blob": fill * int(ret)}))
sys.exit(int(code))
"""


def invoke(tmp_path: Path, lines: int, width: int, ret: int, char: str = "y", fill: str = "x", code: int = 0) -> Any:
    argv = [sys.executable, "-c", SCRIPT, str(lines), str(width), char, str(ret), fill, str(code)]
    return adapter.invoke(
        {"hatchway": 1, "config": {"action": "check", "parameters": {}, "run": {"id": "r"}}, "argv": argv,
         "timeout_seconds": 60, "data_root": str(tmp_path)}
    )  # fmt: skip


def test_a_big_answer_with_the_full_log_fits_by_leaving_log_lines_out(tmp_path: Path) -> None:
    # Given a sync action that answers 5 MB and logs its whole 10 MiB allowance
    outcome = invoke(tmp_path, lines=170, width=64_000, ret=5_000_000)
    # Then its outcome fits Lambda's response, the answer whole and the log's head and last lines kept
    assert encoded_size(outcome) <= LAMBDA_RESPONSE_BYTES
    assert json.loads(outcome["stdout"])["blob"] == "x" * 5_000_000 and not outcome["stdout_truncated"]
    messages = [entry[2] for entry in outcome["logs"]]
    assert messages[0].startswith("000000 ") and messages[-1] == "the last line"
    lines, size = outcome["logs_cut"]
    # (the collector dropped what is over the 10 MiB cap first; every line is counted once)
    assert lines + len(messages) + outcome["logs_dropped"][0] == 171 and size > 4 * MIB
    # and the gateway marks the cut in the log and answers the call
    collector = OutputCollector(Mode.SYNC)
    execution = result_from_outcome(outcome, collector)
    collector.close()
    assert any(e.k == "system" and e.msg.startswith("log truncated:") and "Lambda" in e.msg for e in collector.entries)
    verdict = judge(execution, collector, Mode.SYNC, 30)
    assert verdict.error is None and verdict.ret == {"blob": "x" * 5_000_000}


def test_a_user_errors_message_survives_the_cut(tmp_path: Path) -> None:
    # Given a user error (exit 1) after 9 MiB of log and a 2 MB answer
    outcome = invoke(tmp_path, lines=150, width=64_000, ret=2_000_000, code=1)
    assert encoded_size(outcome) <= LAMBDA_RESPONSE_BYTES and outcome["logs_cut"][0] > 0
    # Then the last stderr lines, where its message is, are still there
    assert outcome["logs"][-1][2] == "the last line"


def test_an_answer_that_cannot_fit_is_left_out_and_marked_not_a_function_error(tmp_path: Path) -> None:
    # Given a valid JSON answer within the contract's 6 MiB whose escapes make it ~8 MB in a Lambda's answer
    outcome = invoke(tmp_path, lines=1, width=10, ret=2_000_000, fill='"')
    # Then the outcome still fits, the answer left out and marked as such
    assert encoded_size(outcome) <= LAMBDA_RESPONSE_BYTES
    assert outcome["stdout"] == "" and outcome["stdout_truncated"] and outcome["stdout_cut"] == 4_000_013
    assert [entry[2] for entry in outcome["logs"]][-1] == "the last line"
    # and the gateway makes it an application error whose reason says why
    collector = OutputCollector(Mode.SYNC)
    verdict = judge(result_from_outcome(outcome, collector), collector, Mode.SYNC, 30)
    assert verdict.error is not None and verdict.error.kind == "application"
    assert verdict.error.message == (
        f"sync output truncated: its 4000013 bytes do not fit in Lambda's {LAMBDA_RESPONSE_BYTES}-byte answer"
    )


def test_a_small_outcome_is_left_as_it_is(tmp_path: Path) -> None:
    outcome = invoke(tmp_path, lines=3, width=10, ret=10)
    assert "logs_cut" not in outcome and "stdout_cut" not in outcome and len(outcome["logs"]) == 4


# ---- the second hop: the API function's answer, as its runtime encodes it -------------------------


def test_an_answer_whose_log_grows_in_the_encoding_loses_log_lines_with_a_marker() -> None:
    from hatchway.api.app import finished
    from hatchway.api.common import event_answer

    # Given a run's answer under the 6 MiB answer limit whose quotes double once it is encoded
    entries = [{"seq": i + 1, "k": "stderr", "ts": 1, "msg": '"' * 60_000} for i in range(40)]
    answer = finished(event_answer(200, {"id": "run_x", "ret": {"a": 1}, "os": entries}, {}), 6 * MIB)
    # Then it fits, the first lines and the last ones kept around a "log truncated" entry
    assert encoded_size(answer) <= LAMBDA_RESPONSE_BYTES and answer["statusCode"] == 200
    body = json.loads(answer["body"])
    seqs = [entry["seq"] for entry in body["os"]]
    [marker] = [entry for entry in body["os"] if entry["k"] == "system"]
    assert marker["msg"].startswith("log truncated: ") and "left out of this answer" in marker["msg"]
    assert seqs[0] == 1 and seqs[-1] == 40 and body["ret"] == {"a": 1}
    # the marker stands where the cut began: the lines before it are the first ones, whole
    at = body["os"].index(marker)
    assert seqs[:at] == list(range(1, at + 1)) and marker["seq"] == at + 1 and seqs[at + 1] > at + 1


def test_an_answer_that_cannot_fit_is_a_500_in_the_error_shape_not_a_function_error() -> None:
    from hatchway.api.app import finished
    from hatchway.api.common import event_answer

    answer = finished(event_answer(200, {"ret": '"' * 4_000_000, "os": []}, {}), 6 * MIB)
    assert answer["statusCode"] == 500 and json.loads(answer["body"])["status"] == "error"
    assert encoded_size(answer) < 10_000
