"""The gateway's own logs: JSON lines through powertools, with correlation from context.

``configure_logging`` puts one handler with powertools' :class:`LambdaPowertoolsFormatter` on the
``hatchway`` logger, and marks it as a configured powertools logger, so ``Logger(service=
"hatchway")`` in a Lambda handler reuses it (and adds the Lambda context). Code logs through the
standard :mod:`logging` API. :func:`log_context` binds ``run_id``, ``project_id``, ``request_id``
(and anything else) for the duration of a request or an attempt; :class:`CorrelationFilter`
copies them onto every record, so each line written on their behalf carries them - from any
module, in any thread that set them. Keys given in ``extra=`` win.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from hatchway.secrets.redact import ACTIVE_SECRETS

if TYPE_CHECKING:
    from hatchway.domain.runs import Run, RunStatus

SERVICE = "hatchway"
#: the correlation keys, in the order they are shown
CORRELATION_KEYS = ("request_id", "project_id", "environment", "run_id", "exceptionId")

_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("hatchway_log_context", default={})  # noqa: B039 - never mutated


@contextlib.contextmanager
def log_context(**keys: Any) -> Iterator[None]:
    """Add ``keys`` to every log line written in this context (nested contexts add to outer ones)."""
    token = _context.set({**_context.get(), **{k: v for k, v in keys.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def current_context() -> dict[str, Any]:
    return dict(_context.get())


class CorrelationFilter(logging.Filter):
    """Copies the bound correlation keys onto each record (an ``extra=`` key of the call wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.setdefault("logger", record.name)
        for key, value in _context.get().items():
            if key not in record.__dict__:
                record.__dict__[key] = value
        return True


class RedactingFormatter(LambdaPowertoolsFormatter):
    """powertools' JSON line, with the secrets of attempts in flight replaced (never in the log)."""

    def format(self, record: logging.LogRecord) -> str:
        return ACTIVE_SECRETS.text(super().format(record))


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> logging.Logger:
    """Send the ``hatchway`` loggers to ``stream`` (default stderr) as powertools JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        RedactingFormatter(
            service=SERVICE,
            utc=True,
            use_rfc3339=True,
            log_record_order=["timestamp", "level", "logger", "message", *CORRELATION_KEYS],
        )
    )
    handler.addFilter(CorrelationFilter())
    logger = logging.getLogger(SERVICE)
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    # what powertools' Logger looks for to reuse a configured logger instead of adding a handler
    logger.init = True  # type: ignore[attr-defined]
    logger.powertools_handler = handler  # type: ignore[attr-defined]
    logger.powertools_buffer_config = None  # type: ignore[attr-defined]
    logger.powertools_buffer_cache = None  # type: ignore[attr-defined]
    # uvicorn's own warnings (a malformed request, a slow shutdown) become JSON lines too; the
    # server passes uvicorn no logging config of its own, and uvicorn sets these loggers' levels
    server_logger = logging.getLogger("uvicorn")
    server_logger.handlers[:] = [handler]
    server_logger.propagate = False
    return logger


_run_log = logging.getLogger("hatchway.runs")


def log_run_change(run: Run, previous: RunStatus | None) -> None:
    """A store observer: one INFO line per run creation and status change, whoever made it."""
    _run_log.info(
        "run %s", "created" if previous is None else "status changed",
        extra={"run_id": run.id, "project_id": run.project_id, "environment": run.environment,
               "action": run.action_name, "from_status": previous.value if previous else None,
               "to_status": run.status.value, "attempt": run.attempt, "mode": run.mode.value},
    )  # fmt: skip


def powertools_logger() -> Any:
    """powertools' ``Logger`` over the configured ``hatchway`` logger (for Lambda handlers)."""
    from aws_lambda_powertools import Logger

    return Logger(service=SERVICE)
