"""Request bodies of the HTTP API (their shape only; meaning is checked by the service)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROJECT_ID_PATTERN = r"^proj_[a-zA-Z0-9]+$"
ENVIRONMENT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class _Body(BaseModel):
    # defer_build: validators are built on first use, not at import (a Lambda cold start imports them all)
    model_config = ConfigDict(defer_build=True, extra="forbid")


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


class RunInput(_Body):
    """Ductape-style request records; they reach the action as ``input`` in config.json."""

    body: Any = None
    query: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    headers: dict[str, Any] | None = None


class SessionRef(_Body):
    tag: Annotated[str, Field(min_length=1, max_length=128)]
    token: Annotated[str, Field(min_length=1, max_length=16384)]


class CacheTagBody(_Body):
    ttl_seconds: Annotated[int, Field(ge=1, le=30 * 86400)]


class SessionTypeBody(_Body):
    algorithm: Literal["HS256", "RS256", "ES256"]
    secret: Annotated[str, Field(min_length=16, max_length=4096)] | None = None
    public_key: Annotated[str, Field(max_length=16384)] | None = None
    issuer: Annotated[str, Field(max_length=512)] | None = None
    audience: Annotated[str, Field(max_length=512)] | None = None


class KeboolaConfigData(BaseModel):
    """Keboola's ``configData``: the parameters and runtime a component sees in its config.json."""

    model_config = ConfigDict(defer_build=True, extra="allow")

    parameters: dict[str, Any] = Field(default_factory=dict)
    runtime: dict[str, Any] | None = None
    image_parameters: dict[str, Any] | None = None


class KeboolaActionBody(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="allow")

    configData: KeboolaConfigData = Field(default_factory=KeboolaConfigData)  # noqa: N815 - Keboola's name


class OAuthTokenBody(BaseModel):
    """An OAuth client-credentials exchange, as the Pipedream SDKs send it."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    grant_type: Literal["client_credentials"] = "client_credentials"
    client_id: Annotated[str, Field(min_length=1, max_length=256)]
    client_secret: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    scope: str | None = None


class DuctapeRunBody(_Body):
    """Ductape's ``actions.run`` input (``IActionProcessorInput``), field for field."""

    env: Annotated[str, Field(min_length=1, max_length=63)]
    product: Annotated[str, Field(min_length=1, max_length=128)]
    app: Annotated[str, Field(min_length=1, max_length=128)]
    event: Annotated[str, Field(min_length=1, max_length=128)]
    input: RunInput = Field(default_factory=RunInput)
    cache: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    retries: Annotated[int, Field(ge=0, le=10)] | None = None
    session: SessionRef | None = None


class ConnectRunBody(BaseModel):
    """Pipedream Connect's ``actions/run`` request."""

    model_config = ConfigDict(defer_build=True, extra="ignore")

    id: Annotated[str, Field(min_length=1, max_length=128)]
    external_user_id: Annotated[str, Field(min_length=1, max_length=256)]
    version: str | None = None
    configured_props: dict[str, Any] | None = None
    dynamic_props_id: str | None = None
    stash_id: str | bool | None = None


class RunRequestBody(_Body):
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


# ---- answers ----------------------------------------------------------------------------------


class _Answer(BaseModel):
    # built on first use: most processes never describe or validate the statistics answer
    model_config = ConfigDict(defer_build=True)


class _Bucket(_Answer):
    start: str
    counts: dict[str, int]


class _Duration(_Answer):
    action: str
    invoked: str
    count: int
    failed: int
    p50_ms: int | None
    p95_ms: int | None
    max_ms: int


class ActionErrorRate(_Answer):
    """An action's failed runs among those that ended on their own (SUCCESSFUL or FAILED) in the
    window; TERMINATED runs are not counted. ``error_rate`` is ``failed / finished`` (0 to 1)."""

    action: str
    invoked: str
    finished: int
    failed: int
    error_rate: float


class _Queue(_Answer):
    enqueued: int
    in_progress: int
    terminating: int


class _Workers(_Answer):
    size: int
    busy: int


class Stats(_Answer):
    """Runs per status over time, duration percentiles and error rates per action, the queue and the workers."""

    window: Literal["hour", "day"]
    since: str
    until: str
    bucket_seconds: int
    statuses: list[str]
    buckets: list[_Bucket]
    totals: dict[str, int]
    durations: list[_Duration]
    error_rates: list[ActionErrorRate]
    queue: _Queue
    workers: _Workers | None
    truncated: bool
