"""The container contract's output rules (runtime/contract.py): lines, the log cap, the sync answer."""

from __future__ import annotations

from hatchway.runtime.contract import Mode, OutputCollector


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
