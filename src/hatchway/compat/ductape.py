"""Ductape's dialect: its fields of a run body (request records ``input``, a ``session`` JWT, a
``cache`` tag, a ``callback_url``, a file stash - next to hatchway's own: parameters, version,
timeout, retries), and its own call, ``actions.run({env, product, app, event, input, cache?,
retries?, session?})``, answered with the app's result as is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from hatchway.domain.runs import RunRequest, SyncOutcome
from hatchway.domain.tenants import Principal
from hatchway.errors import Forbidden, NotFound
from hatchway.ports import TenantRepo
from hatchway.services.actions import ActionService
from hatchway.services.auth import Auth
from hatchway.services.runs import RunService


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


class DuctapeCall(Protocol):
    """The body of ``POST /v1/ductape/actions/run`` as the API validated it."""

    @property
    def product(self) -> str: ...
    @property
    def app(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def input(self) -> _Record: ...
    @property
    def cache(self) -> str | None: ...
    @property
    def retries(self) -> int | None: ...
    @property
    def session(self) -> _Record | None: ...


@dataclass(frozen=True)
class DuctapeAnswer:
    """What the app answered (an HTTP action's upstream body, a command action's JSON) and its run."""

    body: Any
    outcome: SyncOutcome


class DuctapeRuns:
    """Ductape's ``actions.run``: ``product`` is a project (its id or its name), ``env`` an
    environment, ``app`` an action and ``event`` one of its sync actions."""

    def __init__(self, runs: RunService, actions: ActionService, auth: Auth, tenants: TenantRepo) -> None:
        self.runs = runs
        self.actions = actions
        self.auth = auth
        self.tenants = tenants

    def run(self, principal: Principal, environment: str, call: DuctapeCall) -> DuctapeAnswer:
        project_id = self.product(principal, call.product)
        request = RunRequest(
            retries=call.retries,
            input=call.input.model_dump(exclude_none=True),
            cache=call.cache,
            session=call.session.model_dump() if call.session is not None else None,
        )
        self.auth.authorize(principal, project_id, environment, "runs:write")
        resolved = self.actions.resolve(project_id, environment, call.app)
        if call.event not in resolved.spec.sync_actions:
            raise NotFound(f"app {call.app} has no event {call.event}")
        outcome = self.runs.run_sync(project_id, environment, resolved, call.event, request)
        ret = outcome.ret
        if resolved.spec.http is not None and isinstance(ret, dict):  # the upstream's body, not its envelope
            ret = ret.get("body")
        return DuctapeAnswer(ret, outcome)

    def product(self, principal: Principal, product: str) -> str:
        """The project a ``product`` names. A project token reaches only its own project (by id or
        name) and is refused alike for every other product, whether it exists or not."""
        if not principal.is_global_admin:
            own = principal.project_id
            if product == own:
                return own
            project = self.tenants.get_project(own) if own is not None else None
            if project is not None and project.name == product:
                return project.id
            raise Forbidden("this token belongs to another project")
        found = self.tenants.get_project(product) or self.tenants.find_project(product)
        if found is None:
            raise NotFound(f"no product {product}")
        return found.id
