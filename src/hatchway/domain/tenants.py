"""Tenants: projects, the tokens that act in them, and who is calling."""

from __future__ import annotations

import hashlib
import secrets as pysecrets
from dataclasses import dataclass
from typing import Any

from hatchway.domain.runs import iso


@dataclass
class Project:
    id: str
    name: str
    created_at: int

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created_at": iso(self.created_at)}


@dataclass
class TokenRecord:
    """A project token. Only a hash of its secret part is kept."""

    id: str
    project_id: str
    secret_hash: str
    scopes: list[str]
    environments: list[str] | None
    created_at: int
    expires_at: int | None = None
    last_used_at: int | None = None
    name: str | None = None

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "scopes": self.scopes,
            "environments": self.environments,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "last_used_at": iso(self.last_used_at),
        }


SCOPES = ("admin", "actions:read", "actions:write", "runs:read", "runs:write", "secrets:encrypt")
DEFAULT_PROJECT = "proj_local"
DEFAULT_ENVIRONMENT = "development"
TOKEN_PREFIX = "hw_"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True)
class Principal:
    """Who is calling: a project token, or the global admin (``project_id`` None)."""

    token_id: str | None
    project_id: str | None
    scopes: frozenset[str]
    environments: frozenset[str] | None = None

    @property
    def is_global_admin(self) -> bool:
        return self.project_id is None


#: the gateway itself, acting for a user whose request it already authorised (pipeline steps)
SYSTEM = Principal(None, None, frozenset(SCOPES))


@dataclass
class NewToken:
    """A token just made: its record, and the token itself (shown once, never stored)."""

    record: TokenRecord
    token: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def random_alnum(length: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(pysecrets.choice(alphabet) for _ in range(length))


def split_token(token: str) -> tuple[str | None, str]:
    """A project token's id and secret part (``hw_<16 id chars>_<secret>``); (None, token) otherwise."""
    if not token.startswith(TOKEN_PREFIX) or len(token) < len(TOKEN_PREFIX) + 18:
        return None, token
    id_part = token[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + 16]
    if token[len(TOKEN_PREFIX) + 16] != "_":
        return None, token
    return "tok_" + id_part, token[len(TOKEN_PREFIX) + 17 :]
