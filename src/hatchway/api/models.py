"""Request bodies of the HTTP API (their shape only; meaning is checked by the service)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROJECT_ID_PATTERN = r"^proj_[a-zA-Z0-9]+$"
ENVIRONMENT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectCreate(_Body):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    id: Annotated[str, Field(pattern=PROJECT_ID_PATTERN, max_length=64)] | None = None


class TokenCreate(_Body):
    scopes: Annotated[list[str], Field(min_length=1)]
    environments: list[Annotated[str, Field(pattern=ENVIRONMENT_PATTERN)]] | None = None
    expires_at: datetime | None = None
    expires_in_seconds: Annotated[int, Field(ge=1, le=10 * 365 * 86400)] | None = None
    name: Annotated[str, Field(max_length=128)] | None = None

    @model_validator(mode="after")
    def _one_expiry(self) -> TokenCreate:
        if self.expires_at is not None and self.expires_in_seconds is not None:
            raise ValueError("give expires_at or expires_in_seconds, not both")
        return self


class EncryptRequest(_Body):
    value: str | None = None
    values: dict[str, str] | None = None
    action: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> EncryptRequest:
        if (self.value is None) == (self.values is None):
            raise ValueError("give either value or values")
        return self


class RunRequestBody(_Body):
    """The body of ``POST .../runs`` and ``POST .../sync/{sync_action}``."""

    parameters: dict[str, Any] = Field(default_factory=dict)
    version: Annotated[int, Field(ge=1)] | None = None
    digest: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")] | None = None
    timeout_seconds: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] | None = None
    retries: Annotated[int, Field(ge=0, le=10)] | None = None
    external_user_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
