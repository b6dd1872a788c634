"""The small records every backend keeps beside runs and actions: pages of a listing, named
documents, idempotency keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

T = TypeVar("T")

MAX_PAGE = 500
DEFAULT_PAGE = 50


@dataclass
class Page(Generic[T]):
    items: list[T]
    next: str | None = None


@dataclass
class IdempotencyRecord:
    """What the gateway answered (or is answering) to a request carrying an Idempotency-Key."""

    scope: str
    request_hash: str
    run_id: str
    status: str  # "INPROGRESS" | "COMPLETED"
    expires_at: int
    response: dict[str, Any] | None = None
    response_code: int | None = None


@dataclass
class Document:
    """A small named JSON document of a project and environment, optionally expiring.

    Holds what is neither an action nor a run: cache tags and cached answers, session types,
    file stash records, callback secrets. ``kind`` separates the families.
    """

    project_id: str
    environment: str
    kind: str
    name: str
    body: dict[str, Any]
    updated_at: int = 0
    expires_at: int | None = None

    def is_expired(self, now: int) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass
class IdempotencyOutcome:
    """``owner``: the caller should do the work; otherwise ``record`` holds the earlier answer."""

    is_owner: bool
    record: IdempotencyRecord


class Registered(NamedTuple, Generic[T]):
    """What a registration made: the version on record, and whether it is new (False: identical
    to the latest, nothing changed)."""

    record: T
    created: bool
