"""Request bodies of the HTTP API (their shape only; meaning is checked by the service).

The models of routes a Lambda includes on first use (:mod:`hatchway.api.groups`) live with their
routers, so a cold start does not build them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

PROJECT_ID_PATTERN = r"^proj_[a-zA-Z0-9]+$"
ENVIRONMENT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class StrictBody(BaseModel):
    # defer_build: validators are built on first use, not at import (a Lambda cold start imports them all)
    model_config = ConfigDict(defer_build=True, extra="forbid")


class RunInput(StrictBody):
    """Ductape-style request records; they reach the action as ``input`` in config.json."""

    body: Any = None
    query: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    headers: dict[str, Any] | None = None


class SessionRef(StrictBody):
    tag: Annotated[str, Field(min_length=1, max_length=128)]
    token: Annotated[str, Field(min_length=1, max_length=16384)]


class RunRequestBody(StrictBody):
    """The body of ``POST .../runs`` and ``POST .../sync/{sync_action}``."""

    parameters: dict[str, Any] = Field(default_factory=dict)
    version: Annotated[int, Field(ge=1)] | None = None
    digest: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")] | None = None
    timeout_seconds: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] | None = None
    retries: Annotated[int, Field(ge=0, le=10)] | None = None
    external_user_id: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    input: RunInput | None = None
    inputs: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(default_factory=list, max_length=100)
    stash_id: str | bool | None = None
    cache: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    session: SessionRef | None = None
    callback_url: Annotated[str, Field(min_length=8, max_length=2048)] | None = None
