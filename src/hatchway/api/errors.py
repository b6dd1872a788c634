"""The one place where errors become HTTP answers, all in the API's single error shape."""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from hatchway.errors import (
    ActionAppError,
    ActionFailed,
    ActionTimeout,
    ActionUserError,
    BadRequest,
    Conflict,
    Forbidden,
    HatchwayError,
    InProgress,
    InternalError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    ValidationFailed,
    new_exception_id,
)

log = logging.getLogger("hatchway.api")

#: most specific first
STATUS: list[tuple[type[HatchwayError], int, str]] = [
    (ActionUserError, 400, "User error"),
    (ActionTimeout, 504, "Timeout"),
    (ActionAppError, 500, "Application error"),
    (BadRequest, 400, "User error"),
    (Unauthorized, 401, "Unauthorized"),
    (Forbidden, 403, "Forbidden"),
    (NotFound, 404, "Not found"),
    (Conflict, 409, "Conflict"),
    (PayloadTooLarge, 413, "Payload too large"),
    (ValidationFailed, 422, "Validation error"),
    (Overloaded, 429, "Too many requests"),
    (Unavailable, 503, "Service unavailable"),
    (InternalError, 500, "Application error"),
]


def app_error_message(exception_id: str) -> str:
    return f"Application error; quote exceptionId {exception_id} when you report it"


def error_answer(exc: HatchwayError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status code, body, extra headers) for a domain error."""
    code, label = 500, "Application error"
    for cls, status, name in STATUS:
        if isinstance(exc, cls):
            code, label = status, name
            break
    body: dict[str, Any] = {"status": "error", "error": label, "code": code, "message": exc.message}
    headers: dict[str, str] = {}
    if isinstance(exc, ActionFailed):
        body["runId"] = exc.run_id
        body["exceptionId"] = exc.exception_id
    if isinstance(exc, ActionAppError | InternalError):
        body["message"] = app_error_message(exc.exception_id)
    if isinstance(exc, InternalError):
        body["exceptionId"] = exc.exception_id
    if code >= 500 and "exceptionId" not in body:
        body["exceptionId"] = new_exception_id()
        log.warning("%s: %s", label, exc.message, extra={"exceptionId": body["exceptionId"]})
    if isinstance(exc, ValidationFailed):
        body["details"] = exc.details
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, Overloaded | Unavailable | InProgress):
        headers["Retry-After"] = str(exc.retry_after)
    return code, body, headers


def unexpected_answer(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A fault of the gateway: logged with its traceback under an exception id; the client gets the id.

    A :class:`RecursionError` is the one foreign exception a client causes at will: a JSON (or YAML)
    body nested deeper than the interpreter's recursion limit, wherever it is parsed or walked.
    It is the caller's to fix, so it is a 422 (logged, without the traceback).
    """
    if isinstance(exc, RecursionError):
        log.warning("a request nested too deeply", extra={"reason": str(exc)[:200]})
        return error_answer(ValidationFailed.at(["body"], "the body is nested too deeply", "too_deep"))
    exception_id = new_exception_id()
    log.error(
        "internal error",
        extra={"exceptionId": exception_id, "error_type": type(exc).__name__, "where": where(exc)},
    )
    body = {
        "status": "error",
        "error": "Application error",
        "code": 500,
        "message": app_error_message(exception_id),
        "exceptionId": exception_id,
    }
    return 500, body, {}


def where(exc: BaseException, depth: int = 8) -> list[str]:
    """The innermost frames of ``exc`` as ``module:function:line``: enough to find the fault, with
    no host path (a file is named by its module) and no message (which may hold a value)."""
    frames = traceback.extract_tb(exc.__traceback__)[-depth:]
    named = []
    for frame in frames:
        parts = frame.filename.replace("\\", "/").rsplit("/", 3)
        module = ".".join(p for p in parts[1:] if p).removesuffix(".py") if len(parts) > 1 else frame.filename
        named.append(f"{module}:{frame.name}:{frame.lineno}")
    return named


def validation_details(errors: Any) -> list[dict[str, Any]]:
    """pydantic/powertools errors as ``details``; the offending input is never echoed."""
    details = []
    for err in errors:
        loc = list(err.get("loc", ()))
        kind = err.get("type", "value_error")
        msg = str(err.get("msg", "invalid value"))
        if kind == "extra_forbidden":
            msg = f"unknown field {str(loc[-1])!r}"
        elif kind == "json_invalid":
            loc, msg = ["body"], "the body is not valid JSON"
        elif kind == "missing" and loc == ["body"]:
            msg = "a JSON body is required"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        details.append({"loc": loc, "msg": msg, "type": kind})
    return details


def dumps(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
