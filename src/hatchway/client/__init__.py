"""Python client of the hatchway HTTP API: :class:`Client` (blocking) and :class:`AsyncClient`.

Answers are pydantic models (:mod:`hatchway.client.models`); errors are one exception tree under
:class:`HatchwayError` (:mod:`hatchway.client.errors` draws it), connection failures included;
requests that met a 429, a 503 or no connection are retried with backoff, honouring
``Retry-After``, unless they are not idempotent (a POST without an Idempotency-Key)::

    from hatchway.client import Client, NotFound, RunFailed, UserError

    with Client("http://127.0.0.1:8080", token) as hw:
        hw.register_action(spec)
        try:
            hw.call_sync("db-extractor", "test-connection", {"database": "x.db"})
        except UserError as err:
            print(err.message)
        run = hw.start_run("db-extractor", {"database": "x.db"})
        print(hw.wait(run.id, raise_on_failure=True).ret)
"""

from __future__ import annotations

from hatchway.client._async import AsyncClient
from hatchway.client._core import DEFAULT_PROJECT, DEFAULT_URL, EXECUTION_TERMINAL, Retry, read_token
from hatchway.client._sync import Client
from hatchway.client.errors import (
    ERRORS,
    ApiError,
    ApplicationError,
    ApplicationErrorResponse,
    Conflict,
    ConflictResponse,
    ConnectionFailed,
    Forbidden,
    ForbiddenResponse,
    GatewayTimeout,
    HatchwayError,
    NotFound,
    NotFoundResponse,
    PayloadTooLarge,
    PayloadTooLargeResponse,
    RequestTimeout,
    RunFailed,
    Timeout,
    TimeoutResponse,
    TooManyRequests,
    TooManyRequestsResponse,
    Unauthorized,
    UnauthorizedResponse,
    Unavailable,
    UnavailableResponse,
    UnexpectedAnswer,
    UserError,
    UserErrorResponse,
    ValidationErrorResponse,
    ValidationFailed,
    WaitTimeout,
)
from hatchway.client.models import (
    TERMINAL,
    Action,
    LogEntry,
    LogPage,
    NewToken,
    Page,
    Project,
    Run,
    RunSummary,
    SyncResult,
    Token,
    as_json,
)

__all__ = [
    "DEFAULT_PROJECT", "DEFAULT_URL", "ERRORS", "EXECUTION_TERMINAL", "TERMINAL",
    "Action", "ApiError", "ApplicationError", "ApplicationErrorResponse", "AsyncClient", "Client", "Conflict",
    "ConflictResponse", "ConnectionFailed", "Forbidden", "ForbiddenResponse", "GatewayTimeout", "HatchwayError",
    "LogEntry", "LogPage", "NewToken", "NotFound", "NotFoundResponse", "Page", "PayloadTooLarge",
    "PayloadTooLargeResponse", "Project", "RequestTimeout", "Retry", "Run", "RunFailed", "RunSummary", "SyncResult",
    "Timeout", "TimeoutResponse", "Token", "TooManyRequests", "TooManyRequestsResponse", "Unauthorized",
    "UnauthorizedResponse", "Unavailable", "UnavailableResponse", "UnexpectedAnswer", "UserError", "UserErrorResponse",
    "ValidationErrorResponse", "ValidationFailed", "WaitTimeout", "as_json", "read_token",
]  # fmt: skip
