"""The client's exceptions, named by what went wrong; every one is a :class:`HatchwayError`::

    HatchwayError                 anything the client raises (never a raw httpx exception)
    ├── ApiError                  an error answer in the API's one error shape (also a 405, a 415…)
    │   ├── UserError             400: a user error (the action exited 1, a bad parameter)
    │   ├── Unauthorized          401: no token, or one the gateway does not know
    │   ├── Forbidden             403: the token lacks the scope, environment or project
    │   ├── NotFound              404
    │   ├── Conflict              409: an Idempotency-Key reused, a cancel of a finished run
    │   ├── PayloadTooLarge       413
    │   ├── ValidationFailed      422: ``details`` says where
    │   ├── TooManyRequests       429: ``retry_after`` seconds
    │   ├── ApplicationError      500: quote ``exception_id``
    │   ├── Unavailable           503: a dependency is down; nothing was started
    │   └── GatewayTimeout        504: a sync action did not answer in time (also a Timeout)
    ├── Timeout                   something took too long: GatewayTimeout, RequestTimeout, WaitTimeout
    │   ├── RequestTimeout        no answer within the client's timeout
    │   └── WaitTimeout           ``wait()`` gave up (also a builtin ``TimeoutError``)
    ├── ConnectionFailed          no answer at all: refused, DNS, TLS, a dropped connection
    ├── UnexpectedAnswer          a success answer that is not what the API specifies (not JSON, a field missing)
    └── RunFailed                 ``wait(raise_on_failure=True)`` saw the run end FAILED or TERMINATED

Every one carries the error document's fields (``status_code``, ``error``, ``message``,
``exception_id``, ``run_id``, ``details``); those without an answer have ``status_code`` None.
The names of 0.1 (``NotFoundResponse``, ``UserErrorResponse``…) remain as aliases.
"""

from __future__ import annotations

from typing import Any

import httpx


class HatchwayError(Exception):
    """Base of everything the client raises."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: dict[str, Any] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        body = body or {}
        self.status_code = status_code
        self.body = body
        self.headers = headers or httpx.Headers()
        self.error: str = body.get("error", "")
        self.message: str = body.get("message", message)
        self.exception_id: str | None = body.get("exceptionId")
        self.run_id: str | None = body.get("runId")
        self.details: list[dict[str, Any]] = body.get("details") or []
        super().__init__(message)

    @property
    def retry_after(self) -> float | None:
        """Seconds the answer's ``Retry-After`` asks to wait (None without one, or if it is a date)."""
        value = self.headers.get("retry-after")
        try:
            return max(0.0, float(value)) if value else None
        except ValueError:
            return None


class ApiError(HatchwayError):
    """An error answer; ``body`` is its error document."""

    def __init__(self, status_code: int, body: dict[str, Any], headers: httpx.Headers | None = None) -> None:
        text = f"{status_code} {body.get('error', '')}: {body.get('message', '')}"
        super().__init__(text, status_code=status_code, body=body, headers=headers)


class UserError(ApiError):
    """400: the action reported a user error, or the request cannot be honoured."""


class Unauthorized(ApiError):
    """401: no token, or an unknown, expired or malformed one."""


class Forbidden(ApiError):
    """403: the token lacks the scope, environment or project."""


class NotFound(ApiError):
    """404: no such project, action, version, run (or another tenant's)."""


class Conflict(ApiError):
    """409: an Idempotency-Key reused with another body, a cancel of a finished run, a request in flight."""


class PayloadTooLarge(ApiError):
    """413: the body is over the gateway's limit."""


class ValidationFailed(ApiError):
    """422: the request or the action.json does not validate; ``details`` = ``[{loc, msg, type}]``."""


class TooManyRequests(ApiError):
    """429: try again after ``retry_after`` seconds (the client already did, ``retries`` times)."""


class ApplicationError(ApiError):
    """500: the action failed (or the gateway did); quote ``exception_id``."""


class Unavailable(ApiError):
    """503: a dependency (KMS, store, executor) is unreachable; nothing was started."""


class Timeout(HatchwayError):
    """Something took too long: a sync action (504), an answer, or a wait."""


class GatewayTimeout(ApiError, Timeout):
    """504: the sync action did not answer within its limit."""


class RequestTimeout(Timeout):
    """The gateway did not answer within the client's ``timeout``."""


class WaitTimeout(Timeout, TimeoutError):
    """``wait()`` ran out of time; the run goes on (``run_id`` says which)."""


class ConnectionFailed(HatchwayError):
    """No answer at all: the connection was refused or dropped, the name did not resolve, TLS failed."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url} ({reason})")
        self.url = url
        self.reason = reason


class UnexpectedAnswer(HatchwayError):
    """A success answer the client cannot read as the API specifies it (another server at the URL?)."""


class RunFailed(HatchwayError):
    """A run waited for ended FAILED or TERMINATED; ``run`` is its record."""

    def __init__(self, run: Any) -> None:
        error = run.error
        why = f": {error.message}" if error is not None else (f": {run.status_reason}" if run.status_reason else "")
        super().__init__(
            f"run {run.id} ended {run.status}{why}",
            body={"runId": run.id, **({"exceptionId": error.exception_id} if error and error.exception_id else {})},
        )
        self.run = run


ERRORS: dict[int, type[ApiError]] = {
    400: UserError,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
    429: TooManyRequests,
    500: ApplicationError,
    503: Unavailable,
    504: GatewayTimeout,
}


def raise_for_error(response: httpx.Response) -> None:
    """Raise the :class:`ApiError` of an error answer (nothing for a 1xx-3xx)."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"error": response.reason_phrase, "message": response.text[:500]}
    raise ERRORS.get(response.status_code, ApiError)(response.status_code, body, response.headers)


def transport_error(url: str, err: httpx.TransportError) -> HatchwayError:
    """The :class:`HatchwayError` for an httpx transport failure (raise it ``from`` the original)."""
    if isinstance(err, httpx.TimeoutException) and not isinstance(err, httpx.ConnectTimeout):
        return RequestTimeout(f"no answer from {url} in time ({type(err).__name__})")
    return ConnectionFailed(url, type(err).__name__)


# The names of 0.1, kept for code written against them.
UserErrorResponse = UserError
UnauthorizedResponse = Unauthorized
ForbiddenResponse = Forbidden
NotFoundResponse = NotFound
ConflictResponse = Conflict
PayloadTooLargeResponse = PayloadTooLarge
ValidationErrorResponse = ValidationFailed
TooManyRequestsResponse = TooManyRequests
ApplicationErrorResponse = ApplicationError
UnavailableResponse = Unavailable
TimeoutResponse = GatewayTimeout
