"""One exception tree for the whole gateway.

Domain code raises these; only ``hatchway.api`` knows how they become HTTP answers, and only the
place that catches a foreign exception (botocore, docker, subprocess, sqlite) turns it into one of
these, with ``raise ... from``. Messages are written for the client: they never carry a traceback,
a host path or a secret value.

::

    HatchwayError
    ├── BadRequest                 a request the gateway understood but cannot honour (400)
    │   └── SecretBindingError     a ciphertext that belongs elsewhere (400)
    ├── Unauthorized               no usable token (401)
    ├── Forbidden                  the token lacks scope, environment or project (403)
    ├── NotFound                   missing, or somebody else's (404)
    ├── Conflict                   idempotency key reuse, cancel of a finished run (409)
    │   ├── TransitionConflict     a status change lost a race (store level)
    │   └── InProgress             an Idempotency-Key still in progress past the wait; carries ``retry_after``
    ├── PayloadTooLarge            request body over the limit (413)
    ├── ValidationFailed           request or action.json invalid; carries ``details`` (422)
    ├── Overloaded                 too many concurrent calls; carries ``retry_after`` (429)
    ├── Unavailable                a dependency is down; nothing was started (503)
    ├── InternalError              a fault of the gateway itself (500)
    └── ActionFailed               the action ran and did not succeed; carries run_id/exception_id
        ├── ActionUserError        exit code 1 (400)
        ├── ActionAppError         any other failure of the action (500)
        ├── ActionTimeout          the deadline passed (504)
        └── ExecutionFailed        the platform failed the call, or the action ran out of memory (500;
                                   the message says which, unlike an application error's)
"""

from __future__ import annotations

import secrets
from typing import Any


def new_exception_id() -> str:
    """A short random id that ties a client-visible error to the server log."""
    return "exc_" + secrets.token_hex(12)


class HatchwayError(Exception):
    """Base of every error the gateway raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(HatchwayError):
    """The request is well-formed but cannot be honoured."""


class SecretBindingError(BadRequest):
    """A ciphertext that belongs to another project, environment or action."""


class Unauthorized(HatchwayError):
    """No token, or an unknown, expired or malformed one."""

    def __init__(self, message: str = "a valid bearer token is required") -> None:
        super().__init__(message)


class Forbidden(HatchwayError):
    """The token is valid but lacks the scope, environment or project."""


class NotFound(HatchwayError):
    """The object does not exist, or belongs to someone else (indistinguishable on purpose)."""


class Conflict(HatchwayError):
    """The request conflicts with the current state."""


class TransitionConflict(Conflict):
    """A status transition was refused because the run was not in the expected status."""

    def __init__(self, run_id: str, expected: str, actual: str | None) -> None:
        super().__init__(f"run {run_id} is {actual or 'missing'}, not {expected}")
        self.run_id = run_id
        self.expected = expected
        self.actual = actual


class InProgress(Conflict):
    """A request with this Idempotency-Key is still being worked on; ask again after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(HatchwayError):
    """The request body is larger than the gateway accepts."""


class ValidationFailed(HatchwayError):
    """The request or an action.json does not validate."""

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.details = details or []

    @classmethod
    def at(cls, loc: list[str | int], msg: str, type_: str = "value_error") -> ValidationFailed:
        """One validation error at one location."""
        return cls(msg, [{"loc": loc, "msg": msg, "type": type_}])


class Overloaded(HatchwayError):
    """More concurrent work than the gateway admits; try again later."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(HatchwayError):
    """A dependency (store, key service, executor) cannot be reached; nothing was started."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InternalError(HatchwayError):
    """A fault of the gateway itself. The message stays in the log; clients see the exception id."""

    def __init__(self, message: str, exception_id: str | None = None) -> None:
        super().__init__(message)
        self.exception_id = exception_id or new_exception_id()


class ActionFailed(HatchwayError):
    """The action ran and did not succeed."""

    def __init__(self, message: str, run_id: str, exception_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.exception_id = exception_id or new_exception_id()


class ActionUserError(ActionFailed):
    """The action exited 1: the message is the action's own, meant for the user."""


class ActionAppError(ActionFailed):
    """The action failed in a way the user cannot fix; details stay in the server log."""


class ActionTimeout(ActionFailed):
    """The action did not finish within its limit."""


class ExecutionFailed(ActionFailed):
    """The call did not end by the action's own doing: the engine could not run it to its end, or it
    ran out of memory. Unlike :class:`ActionAppError` the message is the client's: it names the
    failure (never a host path) and quotes the exception id."""


# ---- pipelines -----------------------------------------------------------------------------


class StepProblem(HatchwayError):
    """A step cannot start (a reference without a value, an action that is gone); its message says why."""


class StepInputsPending(HatchwayError):
    """A step refers to a step whose outputs are not recorded yet; the state machine retries."""


def error_record(exc: HatchwayError) -> dict[str, Any]:
    """A domain error as data (to replay the same answer to a repeated request)."""
    record: dict[str, Any] = {"type": type(exc).__name__, "message": exc.message}
    for name in ("run_id", "exception_id", "details", "retry_after"):
        if hasattr(exc, name):
            record[name] = getattr(exc, name)
    return record


def rebuild_error(record: dict[str, Any]) -> HatchwayError:
    """The domain error :func:`error_record` described."""
    classes = {cls.__name__: cls for cls in _all_errors(HatchwayError)}
    cls = classes.get(record.get("type", ""), InternalError)
    message = record.get("message", "")
    if issubclass(cls, ActionFailed):
        return cls(message, record.get("run_id", ""), record.get("exception_id"))
    if issubclass(cls, ValidationFailed):
        return cls(message, record.get("details"))
    if issubclass(cls, Overloaded | Unavailable | InProgress):
        return cls(message, record.get("retry_after", 1))
    if issubclass(cls, InternalError):
        return cls(message, record.get("exception_id"))
    if issubclass(cls, TransitionConflict):
        return Conflict(message)
    return cls(message)


def _all_errors(base: type[HatchwayError]) -> list[type[HatchwayError]]:
    found = [base]
    for sub in base.__subclasses__():
        found.extend(_all_errors(sub))
    return found
