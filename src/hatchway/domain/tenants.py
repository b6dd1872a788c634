"""Tenants: projects and the tokens that act in them."""

from __future__ import annotations

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
