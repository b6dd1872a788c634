"""The gateway's log lines: the quick path writes exactly what powertools' formatter writes."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from hatchway.observability.logs import CorrelationFilter, RedactingFormatter, configure_logging, log_context


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def formatter() -> Iterator[RedactingFormatter]:
    configure_logging("DEBUG")
    handler = logging.getLogger("hatchway").handlers[0]
    assert isinstance(handler.formatter, RedactingFormatter)
    yield handler.formatter
    configure_logging("INFO")


def records(**context: Any) -> list[logging.LogRecord]:
    """Records as the gateway's code writes them, through the correlation filter."""
    keep = Keep()
    keep.addFilter(CorrelationFilter())
    logger = logging.getLogger("hatchway.test.logs")
    logger.handlers[:] = [keep]
    logger.propagate = False
    try:
        with log_context(**context):
            logger.info("request", extra={"method": "POST", "status": 202, "duration_ms": 0.4, "route": None})
            logger.info("run %s", "created", extra={"run_id": "run_1", "to_status": "ENQUEUED", "attempt": 0})
            logger.warning('café ✓ "quoted" \\ back', extra={"path": Path("/x"), "when": dt.date(2026, 1, 2)})
            logger.info("with an exception key", extra={"exception": "given", "exception_name": "Given"})
            logger.error("  spaced %d%%", 5, extra={"nested": {"a": [1, None]}, "empty": ""})
            logger.info("")
    finally:
        logger.handlers[:] = []
    return keep.records


@pytest.mark.parametrize(
    "context", [{}, {"request_id": "req-1", "project_id": "proj_a", "environment": "production", "run_id": None}]
)
def test_the_quick_path_writes_what_powertools_writes(formatter: RedactingFormatter, context: dict[str, Any]) -> None:
    for record in records(**context):
        quick = formatter._plain(record)
        assert quick is not None, record.msg
        assert quick == LambdaPowertoolsFormatter.format(formatter, record)


def test_the_quick_path_follows_the_xray_trace_and_appended_keys(
    formatter: RedactingFormatter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8")
    formatter.append_keys(function_name="api", cold_start=True)
    try:
        for record in records(request_id="req-2"):
            quick = formatter._plain(record)
            assert quick is not None
            assert quick == LambdaPowertoolsFormatter.format(formatter, record)
            assert '"xray_trace_id":"1-5759e988-bd862e3fe1be46a994272793"' in quick
            assert '"function_name":"api"' in quick
    finally:
        formatter.remove_keys(["function_name", "cold_start"])


def test_what_the_quick_path_does_not_cover_goes_to_powertools(formatter: RedactingFormatter) -> None:
    keep = Keep()
    logger = logging.getLogger("hatchway.test.logs.other")
    logger.handlers[:] = [keep]
    logger.propagate = False
    try:
        logger.info('{"a": 1}')  # powertools decodes a JSON message into the line
        logger.info("42")
        logger.info({"a": 1})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.handlers[:] = []
    for record in keep.records:
        assert formatter._plain(record) is None
        assert formatter.format(record) == LambdaPowertoolsFormatter.format(formatter, record)
    assert '"message":{"a":1}' in formatter.format(keep.records[0])
    assert '"exception_name":"ValueError"' in formatter.format(keep.records[3])
