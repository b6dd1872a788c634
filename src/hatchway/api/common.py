"""Plumbing shared by the API's route modules: answers, headers, the caller, the environment."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query

from hatchway.api.errors import dumps
from hatchway.api.models import ENVIRONMENT_PATTERN
from hatchway.domain.records import MAX_PAGE, Page
from hatchway.domain.tenants import DEFAULT_ENVIRONMENT, Principal
from hatchway.errors import InternalError, ValidationFailed
from hatchway.runtime.contract import LAMBDA_RESPONSE_BYTES, encoded_size
from hatchway.services.auth import Auth

if TYPE_CHECKING:
    from hatchway.config import Settings

log = logging.getLogger("hatchway.api")

JSON = "application/json"
ProjectId = Annotated[str, Path(pattern=r"^proj_[a-zA-Z0-9]+$", description="project id")]
Environment = Annotated[
    str | None,
    Header(alias="x-hatchway-environment", description="environment inside the project (default development)"),
]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")]
Cursor = Annotated[str | None, Query(description="cursor from the previous page's next")]


#: API answers are never cached by intermediaries and never sniffed as something else
SAFE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def json_answer(code: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(status_code=code, content_type=JSON, body=dumps(body), headers={**SAFE_HEADERS, **(headers or {})})


def page_of(items: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {"items": items, "next": next_cursor}


#: room for everything of a page but its items: the braces, the keys and the next cursor
PAGE_OVERHEAD = 4096
#: a body longer than this may be over Lambda's response limit once encoded (an escape is at most 6 bytes)
ENCODING_GROWS_FROM = LAMBDA_RESPONSE_BYTES // 6
T = TypeVar("T")


def page_answer(
    fetch: Callable[[int], Page[T]], limit: int, present: Callable[[T], Any], max_bytes: int
) -> Response[str]:
    """A list page as an answer of at most ``max_bytes`` (``HATCHWAY_MAX_ANSWER_BYTES``).

    When its items would not all fit, the page ends with the last one that does, and its ``next``
    reads on from there: the shorter page is asked of the store again with the same cursor, so
    ``next`` is the store's own cursor (opaque, bound to the list and tenant) - a client that
    follows ``next`` sees every item once, whatever ``limit`` it asked for. Items are serialised one
    at a time, so a large page never holds the interpreter in one long call. A single item larger
    than the limit cannot be answered (500, logged with the sizes).
    """
    page = fetch(limit)
    while True:
        parts: list[str] = []
        size = PAGE_OVERHEAD
        encoded: int | None = None
        for item in page.items:
            text = dumps(present(item))
            size += (len(text) if text.isascii() else len(text.encode())) + 1
            # the page must also fit Lambda's response once its body is a JSON string in the
            # function's answer (escaped; the API answers alike on every backend: api.app.finished),
            # which only a page past ENCODING_GROWS_FROM can miss: only such a page is measured so
            if encoded is None and size > ENCODING_GROWS_FROM:
                encoded = PAGE_OVERHEAD + sum(encoded_size(part) - 1 for part in parts)
            if encoded is not None:
                encoded += encoded_size(text) - 1
            if size > max_bytes or (encoded is not None and encoded > LAMBDA_RESPONSE_BYTES):
                break
            parts.append(text)
        else:
            body = '{"items":[' + ",".join(parts) + '],"next":' + dumps(page.next) + "}"
            return Response(status_code=200, content_type=JSON, body=body, headers=dict(SAFE_HEADERS))
        if not parts:
            raise too_large(size, max_bytes, "a list item")
        page = fetch(len(parts))


def too_large(
    size: int, max_bytes: int, what: str = "an answer", limit: str = "HATCHWAY_MAX_ANSWER_BYTES"
) -> InternalError:
    """The error for an answer that may not leave; its sizes are logged under its exception id."""
    error = InternalError(f"{what} of {size} bytes is over {limit} ({max_bytes})")
    log.error(error.message, extra={"exceptionId": error.exception_id})
    return error


#: routes anyone may call; everything else needs a token, checked before the request is validated
PUBLIC_PATHS = {"/", "/health", "/openapi.json", "/docs", "/v1/oauth/token", "/ui"}
#: the console's files (its page asks for a token itself, and sends it only to the API)
PUBLIC_PREFIXES: tuple[str, ...] = ("/ui/",)
PROJECT_PATH = re.compile(r"^/v1/(projects|connect)/([^/]+)")
PRINCIPAL: ContextVar[Principal | None] = ContextVar("hatchway_principal", default=None)


def header(event: dict[str, Any], name: str) -> str | None:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def public_base(event: dict[str, Any]) -> str:
    """Where this request reached the gateway, up to the API's root: scheme, host and stage prefix.

    API Gateway sets ``X-Forwarded-Proto`` itself and names its domain and stage in the request
    context (a named stage is the first segment of its default URL); the local server fills the
    same fields from the connection (uvicorn takes the scheme from a trusted proxy only).
    """
    context = event.get("requestContext") or {}
    scheme = (header(event, "x-forwarded-proto") or "https").split(",")[0].strip()
    host = context.get("domainName") or header(event, "host") or "localhost"
    stage = context.get("stage")
    prefix = f"/{stage}" if stage and stage != "$default" else ""
    return f"{scheme}://{host}{prefix}"


def is_json(content_type: str | None) -> bool:
    kind = (content_type or "").split(";")[0].strip().lower()
    return kind == JSON or kind.endswith("+json")


def event_answer(code: int, body: Any, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "statusCode": code,
        "headers": {"Content-Type": JSON, **SAFE_HEADERS, **headers},
        "body": dumps(body),
        "isBase64Encoded": False,
        "cookies": [],
    }


def principal(auth: Auth, headers: Any) -> Principal:
    """The caller, authenticated before validation by :class:`hatchway.api.app.Api`."""
    return PRINCIPAL.get() or auth.authenticate(headers.get("authorization"))


def new_router() -> Router:
    """An empty powertools ``Router`` (its constructor is not annotated)."""
    return Router()  # type: ignore[no-untyped-call]


def caller(auth: Auth, router: Router) -> Callable[[], Principal]:
    """The caller of the request ``router`` is answering (its resolver keeps the event per thread)."""

    def current() -> Principal:
        return principal(auth, router.current_event.headers)

    return current


def pager(settings: Settings) -> Callable[..., Response[str]]:
    """:func:`page_answer` bound to the largest answer: every list page stays below it."""
    return partial(page_answer, max_bytes=settings.server.max_answer_bytes)


#: what a request keeps of its Lambda's remaining time for answering after a wait
DEADLINE_MARGIN_SECONDS = 2.0
#: how long a request may take without a Lambda context that says (the local server's answers 30 s)
NO_CONTEXT_SECONDS = 30.0


def request_deadline(context: Any) -> float:
    """When (``time.monotonic()``, the services' system clock) the request being answered must
    have its answer: its Lambda's remaining time less a margin to send it. A use case that waits
    (a repeated Idempotency-Key) gives up then instead of outliving its own request."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    seconds = remaining() / 1000 if remaining is not None else NO_CONTEXT_SECONDS
    return time.monotonic() + seconds - DEADLINE_MARGIN_SECONDS


def env_name(value: str | None, header: str = "X-Hatchway-Environment") -> str:
    if value is None or value == "":
        return DEFAULT_ENVIRONMENT
    if not re.match(ENVIRONMENT_PATTERN, value):
        raise ValidationFailed.at(
            ["header", header],
            "an environment name is lowercase letters, digits, '_' and '-', at most 63 characters",
        )
    return value
