"""What the command line prints, checked without a gateway: tables, error lines, completion, profile."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest

from hatchway.cli import _profile
from hatchway.cli._common import app, attempt, describe
from hatchway.cli._output import age, clean, fail, print_data, print_table
from hatchway.cli.runs import duration
from hatchway.client import ApiError, ValidationFailed

RUN_ID = "run_01KBX3Y8M4ZQ7W2N5V6T9R0PAB"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_piped_table_prints_every_cell_whole(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    print_table(["id", "description"], [[RUN_ID, "a long description " * 5]])
    out = capsys.readouterr().out
    assert RUN_ID in out and ("a long description " * 5).strip() in out and "…" not in out


def test_on_a_narrow_terminal_ids_stay_whole_and_the_other_columns_give_way(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    monkeypatch.setenv("COLUMNS", "80")
    print_table(
        ["id", "action", "created", "description"], [[RUN_ID, "db-extractor@12", "2026-12-07T04:48:04Z", "x" * 90]]
    )
    lines = terminal.getvalue().splitlines()
    assert lines[0].split() == ["ID", "ACTION", "CREATED", "DESCRIPTION"]
    assert lines[1].startswith(RUN_ID + "  ") and "…" in lines[1]
    assert all(len(line) <= 80 for line in lines)


def test_server_text_is_printed_as_sent(capsys: pytest.CaptureFixture[str]) -> None:
    # Given text that Rich would have read as markup
    text = "bad value '[hidden]' at [id] [/end] [bold]x[/bold]"
    print_table(["message"], [[text]])
    print_data({"message": text}, "json")
    with pytest.raises(SystemExit) as exited:
        fail(text)
    printed = capsys.readouterr()
    # Then every bracket is printed, and nothing raised on [/end]
    assert exited.value.code == 1
    assert text in printed.out and json.loads(printed.out.split("\n", 2)[2])["message"] == text
    assert printed.err == f"error: {text}\n"


def test_an_api_error_is_one_line_with_its_run_and_exception_id() -> None:
    err = ApiError(500, {"error": "Application error", "message": "Application error; quote exceptionId exc_1",
                         "exceptionId": "exc_1", "runId": RUN_ID})  # fmt: skip
    assert describe(err) == (
        f"500 Application error: Application error; quote exceptionId exc_1 [run {RUN_ID}] [exceptionId exc_1]"
    )


def test_a_build_log_is_printed_once_without_terminal_escapes(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a 422 whose message is its one detail's message, a build log with colours
    log = "the image build failed:\nStep 1/2 : FROM python\n\x1b[91mERROR: no such package\x1b[0m"
    detail = {"loc": ["body", "docker_config"], "msg": log, "type": "build_failed"}
    err = ValidationFailed(422, {"error": "Validation error", "message": log, "details": [detail]})
    with pytest.raises(SystemExit):
        fail(describe(err))
    printed = capsys.readouterr().err
    assert printed.count("the image build failed") == 1 and "\x1b" not in printed
    assert printed.startswith("error: 422 Validation error: docker_config: the image build failed:")
    assert "ERROR: no such package" in printed


def test_a_detail_that_adds_to_the_message_is_shown_with_its_location() -> None:
    detail = {"loc": ["body", "memory"], "msg": "must be one of 1024, 2048", "type": "x"}
    err = ValidationFailed(422, {"error": "Validation error", "message": "the action.json does not validate",
                                 "details": [detail]})  # fmt: skip
    assert describe(err).endswith("does not validate (memory: must be one of 1024, 2048)")


def test_clean_drops_escapes_and_controls_but_keeps_lines() -> None:
    assert clean("\x1b[31mred\x1b[0m\tand\nnext\x07\x1b]0;title\x07") == "red\tand\nnext"


@pytest.mark.parametrize(
    ("record", "shown"),
    [
        ({"attempt": 1, "max_attempts": 1}, "1/1"),
        ({"attempt": 2, "max_attempts": 3}, "2/3"),
        ({"attempt": 2, "max_attempts": 1}, "2 (1 lost)"),
    ],  # fmt: skip
)
def test_an_attempt_after_a_lost_one_is_never_shown_as_2_of_1(record: dict[str, int], shown: str) -> None:
    assert attempt(record) == shown


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0), ("1d", 86400.0)]
)
def test_since_takes_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        (["ru"], ["run", "runs"]),
        (["runs", ""], ["list", "get", "logs", "cancel", "wait"]),
        (["runs", "logs", "--t"], ["--tail", "--token"]),
        (["runs", "list", "-o", ""], ["table", "json", "yaml"]),
        (["--proj"], ["--project"]),
        (["completion", ""], ["bash", "zsh"]),
        (["runs", "logs", "--tail", "5", "--s"], ["--since"]),
    ],
)
def test_completion_offers_what_may_come_next(words: list[str], offered: list[str]) -> None:
    assert app.complete(words) == offered


def test_the_profile_is_private_and_keeps_a_token_per_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    where = _profile.save("https://a.example", "hw_a", "proj_a")
    _profile.save("https://b.example", "hw_b", None)
    assert stat.S_IMODE(where.stat().st_mode) == 0o600 and stat.S_IMODE(where.parent.stat().st_mode) == 0o700
    assert _profile.gateway(None) == ("https://b.example", {"token": "hw_b"})
    assert _profile.gateway("https://a.example/") == ("https://a.example", {"token": "hw_a", "project": "proj_a"})
    assert _profile.gateway("https://c.example") == ("https://c.example", {})
    assert _profile.forget(None) == "https://b.example"
    assert _profile.gateway(None)[0] == "https://a.example"
    assert _profile.forget("https://b.example") is None


def test_a_table_keeps_the_columns_it_is_told_to_keep(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stdout", terminal)
    monkeypatch.setenv("COLUMNS", "60")
    print_table(["id", "action", "status"], [[RUN_ID, "check-magnetometer-norm@1", "SUCCESSFUL"]], keep=(0, 2))
    row = terminal.getvalue().splitlines()[1].split()
    assert row[0] == RUN_ID and row[2] == "SUCCESSFUL" and row[1].endswith("…")


@pytest.mark.parametrize(("seconds", "shown"), [(5, "5s"), (300, "5m"), (7300, "2h"), (200000, "2d")])
def test_ages_are_short(seconds: int, shown: str) -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 7, 5, 0, 0, tzinfo=UTC).timestamp()
    then = datetime.fromtimestamp(now - seconds, UTC).isoformat().replace("+00:00", "Z")
    assert age(then, now) == shown


def test_an_unreadable_answer_is_a_hatchway_error_not_a_pydantic_one() -> None:
    import httpx

    from hatchway.client import Client, UnexpectedAnswer

    def transport(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "run_x"})  # a run without its fields

    mock = httpx.MockTransport(transport)
    with Client("http://gw.test", "t", transport=mock) as hw, pytest.raises(UnexpectedAnswer) as caught:
        hw.get_run("run_x")
    assert caught.value.status_code is None and caught.value.message.startswith("GET /v1/projects/proj_local/runs")
