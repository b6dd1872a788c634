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
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from aws_lambda_powertools.logging.formatter import RESERVED_LOG_ATTRS, LambdaPowertoolsFormatter
from aws_lambda_powertools.logging.formatter import _get_context as _powertools_keys

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


#: the keys powertools fills from the record itself, and how (its default log format)
_STANDARD_FORMAT = {"level": "%(levelname)s", "location": "%(funcName)s:%(lineno)d", "timestamp": "%(asctime)s"}
#: how a message that is JSON may start (powertools decodes such a message into the line)
_JSON_START = frozenset('{["-0123456789tfnNI')
_XRAY_TRACE_ID_ENV = "_X_AMZN_TRACE_ID"


class RedactingFormatter(LambdaPowertoolsFormatter):
    """powertools' JSON line, with the secrets of attempts in flight replaced (never in the log).

    The lines of every request and run change (the access and run logs) go through :meth:`_plain`,
    which writes the same line as powertools' ``format`` at a third of its cost: one dict in the log
    format's order, no copy of the record, no attempt to decode the message as JSON. Anything it
    does not cover - an exception, a dict or JSON message, keys appended through powertools (a
    Lambda handler's ``Logger``), a log format of another shape - goes to powertools.
    tests/unit/test_logs.py holds the two to the same output.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._template: dict[str, Any] | None = None
        self._plan()

    def _plan(self) -> None:
        fills = {k: v for k, v in self.log_format.items() if v and k in RESERVED_LOG_ATTRS}
        plain = fills == _STANDARD_FORMAT and self.json_default is str and self.json_indent is None
        self._template = {k: (None if k in fills else v) for k, v in self.log_format.items()} if plain else None

    def append_keys(self, **additional_keys: Any) -> None:
        super().append_keys(**additional_keys)
        self._plan()

    def remove_keys(self, keys: Iterable[str]) -> None:
        super().remove_keys(keys)
        self._plan()

    def clear_state(self) -> None:
        super().clear_state()
        self._plan()

    def format(self, record: logging.LogRecord) -> str:
        line = self._plain(record)
        return ACTIVE_SECRETS.text(line if line is not None else super().format(record))

    def _plain(self, record: logging.LogRecord) -> str | None:
        template, message = self._template, record.msg
        if template is None or record.exc_info or not isinstance(message, str) or _powertools_keys().get():
            return None
        if record.args:
            message = record.getMessage()
        elif message.lstrip()[:1] in _JSON_START:
            return None
        line = dict(template)
        line["timestamp"] = datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")
        line["level"] = record.levelname
        line["location"] = f"{record.funcName}:{record.lineno}"
        for key, value in record.__dict__.items():
            if key not in RESERVED_LOG_ATTRS:
                line[key] = value
        line["message"] = message
        trace = os.environ.get(_XRAY_TRACE_ID_ENV)
        if trace and self.log_format.get("xray_trace_id", "") is not None:
            line["xray_trace_id"] = trace.split(";")[0].replace("Root=", "")
        return json.dumps(
            {k: v for k, v in line.items() if v is not None}, default=str, separators=(",", ":"), ensure_ascii=False
        )


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
