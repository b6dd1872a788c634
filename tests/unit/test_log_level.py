"""The log level setting decides which of the gateway's JSON lines are written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from hatchway.config import Settings
from hatchway.observability.logs import configure_logging


@pytest.fixture
def restored() -> Iterator[None]:
    yield
    configure_logging("INFO")


@pytest.mark.parametrize(
    ("level", "written"), [("WARNING", ["WARNING", "ERROR"]), ("info", ["INFO", "WARNING", "ERROR"])]
)
def test_hatchway_log_level_drops_the_lines_below_it(
    restored: None, tmp_path: Path, level: str, written: list[str]
) -> None:
    # Given the level from the environment, as `serve` reads it
    settings = Settings.from_env({"HATCHWAY_LOG_LEVEL": level, "HATCHWAY_HOME": str(tmp_path)})
    stream = io.StringIO()
    configure_logging(settings.observability.log_level, stream)
    # When the gateway's modules and its HTTP server log at each level
    for name in ("hatchway.service", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.debug("a debug line")
        logger.info("an info line")
        logger.warning("a warning line")
        logger.error("an error line")
    # Then only the lines at or above the level are written, each a JSON line
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["level"] for e in entries if e["logger"] == "hatchway.service"] == written
    assert {e["logger"] for e in entries} == {"hatchway.service", "uvicorn.error"}
