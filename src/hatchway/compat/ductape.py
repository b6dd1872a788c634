"""Ductape's fields of a run body: request records (``input``), a ``session`` JWT, a ``cache`` tag, a
``callback_url``, a file stash - next to hatchway's own (parameters, version, timeout, retries)."""

from __future__ import annotations

from typing import Any, Protocol

from hatchway.domain.runs import RunRequest


class _Record(Protocol):
    def model_dump(self, *, exclude_none: bool = ...) -> dict[str, Any]: ...


class RunBody(Protocol):
    """The body of ``POST .../runs`` and ``POST .../sync/{sync_action}`` as the API validated it."""

    @property
    def parameters(self) -> dict[str, Any]: ...
    @property
    def version(self) -> int | None: ...
    @property
    def digest(self) -> str | None: ...
    @property
    def timeout_seconds(self) -> int | None: ...
    @property
    def retries(self) -> int | None: ...
    @property
    def external_user_id(self) -> str | None: ...
    @property
    def input(self) -> _Record | None: ...
    @property
    def inputs(self) -> list[str]: ...
    @property
    def stash_id(self) -> str | bool | None: ...
    @property
    def cache(self) -> str | None: ...
    @property
    def session(self) -> _Record | None: ...
    @property
    def callback_url(self) -> str | None: ...


def run_request(body: RunBody) -> RunRequest:
    """The run ``body`` asks for: its request records without empty parts, its session as given."""
    return RunRequest(
        parameters=body.parameters,
        version=body.version,
        digest=body.digest,
        timeout_seconds=body.timeout_seconds,
        retries=body.retries,
        external_user_id=body.external_user_id,
        input=body.input.model_dump(exclude_none=True) if body.input is not None else None,
        inputs=body.inputs,
        stash_id=body.stash_id,
        cache=body.cache,
        session=body.session.model_dump() if body.session is not None else None,
        callback_url=body.callback_url,
    )
