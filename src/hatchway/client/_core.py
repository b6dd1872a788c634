"""What :class:`~hatchway.client.Client` and :class:`~hatchway.client.AsyncClient` share: the
request each API method makes (a :class:`Call`: method, path, body, and how to read the answer),
the retry policy, and the methods made of one call, written once.

A method of :class:`Methods` builds its :class:`Call` and hands it to ``self._send``: the sync
client's ``_send`` answers the parsed result, the async client's a coroutine of it, so the async
client takes these methods as they are (re-typed by :func:`awaitable`). Methods that make several
calls (pages, ``wait``, ``follow_logs``) are written in each client.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar

from hatchway.client.errors import (
    Conflict,
    ConnectionFailed,
    HatchwayError,
    TooManyRequests,
    Unavailable,
    UnexpectedAnswer,
)
from hatchway.client.models import Action, LogPage, NewToken, Page, Project, Run, RunSummary, SyncResult, Token

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")
P = ParamSpec("P")

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_PROJECT = "proj_local"
EXECUTION_TERMINAL = frozenset({"SUCCESSFUL", "WARNING", "FAILED", "TERMINATED"})
#: what a retry may cure: the gateway was busy, or never got the request
RETRIED = (ConnectionFailed, TooManyRequests, Unavailable)
#: methods that may be sent twice with the effect of once (POST only with an Idempotency-Key)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def _json(value: Any) -> Any:
    return value


@dataclass
class Call(Generic[T]):
    """One request and how its JSON answer becomes the method's result."""

    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    timeout: float | None = None
    parse: Callable[[Any], T] = field(default=_json)
    #: the answer is text (Prometheus metrics), handed to ``parse`` as it is
    is_text: bool = False

    @property
    def has_idempotency_key(self) -> bool:
        return bool(self.headers and "idempotency-key" in self.headers)

    @property
    def is_idempotent(self) -> bool:
        """Whether a retry cannot do the work twice."""
        return self.method in IDEMPOTENT or self.has_idempotency_key

    def query(self) -> dict[str, Any]:
        return {k: v for k, v in (self.params or {}).items() if v is not None}

    def options(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"json": self.json, "params": self.query(), "headers": self.headers}
        if self.timeout is not None:
            extra["timeout"] = self.timeout
        return extra


class Retry:
    """How failed requests are tried again: on 429, 503 and connection failures (and on a 409 with
    ``Retry-After``, an Idempotency-Key still in progress), ``retries`` times,
    waiting ``Retry-After`` when the answer says (at most ``max_retry_after``), else an exponential
    backoff with jitter from ``backoff`` seconds up to ``max_backoff``. A request that is not
    idempotent (a POST without an Idempotency-Key) is never retried.
    """

    def __init__(
        self, retries: int = 2, backoff: float = 0.25, max_backoff: float = 8.0, max_retry_after: float = 60.0
    ) -> None:
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after

    def after(self, call: Call[Any], failure: HatchwayError, tries: int) -> float | None:
        """Seconds to wait before trying ``call`` again after its ``tries``-th failure, or None to give up."""
        # a 409 with Retry-After: the same Idempotency-Key is still being worked on; its answer comes later
        in_flight = isinstance(failure, Conflict) and failure.retry_after is not None and call.has_idempotency_key
        if not (isinstance(failure, RETRIED) or in_flight) or not call.is_idempotent or tries > self.retries:
            return None
        return self.delay(tries, failure.retry_after)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not a secret


def read_token(home: str | os.PathLike[str] | None = None) -> str | None:
    """The bootstrap token a local gateway wrote to ``$HATCHWAY_HOME/token``."""
    base = Path(home or os.environ.get("HATCHWAY_HOME") or "~/.hatchway").expanduser()
    try:
        return (base / "token").read_text().strip() or None
    except OSError:
        return None


def configure(
    client: Any, url: str | None, token: str | None, project: str, environment: str | None, retries: int | Retry
) -> dict[str, Any]:
    """Set a client's ``url``, ``token``, ``project``, ``environment`` and ``retry`` from its arguments,
    the environment and the local gateway; the httpx client's base URL and headers."""
    client.url = (url or os.environ.get("HATCHWAY_URL") or DEFAULT_URL).rstrip("/")
    client.token = token or os.environ.get("HATCHWAY_TOKEN") or read_token()
    client.project = project
    client.environment = environment
    client.retry = retries if isinstance(retries, Retry) else Retry(retries)
    headers = {"user-agent": "hatchway-client"}
    if client.token:
        headers["authorization"] = f"Bearer {client.token}"
    if environment:
        headers["x-hatchway-environment"] = environment
    return {"base_url": client.url, "headers": headers}


def awaitable(method: Callable[Concatenate[Any, P], T]) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
    """A :class:`Methods` method as the async client has it: its body returns ``_send``'s coroutine."""
    return method  # type: ignore[return-value]


def _model(model: type[T]) -> Callable[[Any], T]:
    return model.model_validate  # type: ignore[attr-defined,no-any-return]


def _items(model: type[T]) -> Callable[[Any], list[T]]:
    return lambda page: [model.model_validate(item) for item in page["items"]]  # type: ignore[attr-defined]


def run_body(parameters: dict[str, Any] | None, **options: Any) -> dict[str, Any]:
    """The body of a run request: the parameters and the options given."""
    body: dict[str, Any] = {"parameters": parameters or {}}
    body.update({k: v for k, v in options.items() if v is not None})
    return body


class Methods:
    """The API methods made of one request; ``_send`` runs a :class:`Call`."""

    url: str
    token: str | None
    project: str
    environment: str | None
    retry: Retry

    def _send(self, call: Call[T]) -> T:
        raise NotImplementedError

    def _p(self, project: str | None) -> str:
        return f"/v1/projects/{project or self.project}"

    # ---- meta, projects, tokens, secrets ----------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``{"status": "ok", "version": ...}``."""
        return self._send(Call[dict[str, Any]]("GET", "/health"))

    def create_project(self, name: str, project_id: str | None = None) -> Project:
        """Create a project (global admin token): ``hw.create_project("team-a").id``."""
        body = {"name": name, **({"id": project_id} if project_id else {})}
        return self._send(Call("POST", "/v1/projects", json=body, parse=_model(Project)))

    def get_project(self, project: str | None = None) -> Project:
        """This client's project (or ``project``)."""
        return self._send(Call("GET", self._p(project), parse=_model(Project)))

    def create_token(
        self,
        scopes: list[str],
        environments: list[str] | None = None,
        expires_in_seconds: int | None = None,
        name: str | None = None,
        project: str | None = None,
    ) -> NewToken:
        """Make a project token; its value (``.token``) is shown this once::

        hw.create_token(["runs:read", "runs:write"], environments=["prod"], name="ci").token
        """
        body: dict[str, Any] = {"scopes": scopes}
        optional = {"environments": environments, "expires_in_seconds": expires_in_seconds, "name": name}
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._send(Call("POST", f"{self._p(project)}/tokens", json=body, parse=_model(NewToken)))

    def list_tokens(self, project: str | None = None) -> list[Token]:
        """A project's tokens (never their values)."""
        return self._send(Call("GET", f"{self._p(project)}/tokens", parse=_items(Token)))

    def revoke_token(self, token_id: str, project: str | None = None) -> None:
        """Revoke a token; it stops working at once."""
        return self._send(Call[None]("DELETE", f"{self._p(project)}/tokens/{token_id}"))

    def encrypt(self, value: str, action: str | None = None, project: str | None = None) -> str:
        """A ciphertext of ``value`` for this project and environment (bound to ``action`` if given)."""
        body = {"value": value, **({"action": action} if action else {})}
        return self._send(Call("POST", f"{self._p(project)}/encrypt", json=body, parse=lambda d: str(d["ciphertext"])))

    def encrypt_values(
        self, values: dict[str, str], action: str | None = None, project: str | None = None
    ) -> dict[str, str]:
        """Ciphertexts of several values at once, by the same keys."""
        body = {"values": values, **({"action": action} if action else {})}
        return self._send(Call("POST", f"{self._p(project)}/encrypt", json=body, parse=lambda d: dict(d["values"])))

    # ---- actions ---------------------------------------------------------------------------

    def register_action(self, spec: dict[str, Any], project: str | None = None) -> Action:
        """Register an action.json: a new version, or the latest if identical::

        hw.register_action(json.loads(Path("action.json").read_text())).version
        """
        return self._send(Call("POST", f"{self._p(project)}/actions", json=spec, parse=_model(Action)))

    def get_action(
        self, name: str, version: int | None = None, digest: str | None = None, project: str | None = None
    ) -> Action:
        """An action's latest version, or the one with ``version`` or ``digest``."""
        params = {"version": version, "digest": digest}
        return self._send(Call("GET", f"{self._p(project)}/actions/{name}", params=params, parse=_model(Action)))

    def delete_action(self, name: str, project: str | None = None) -> None:
        """Delete an action (its runs stay readable)."""
        return self._send(Call[None]("DELETE", f"{self._p(project)}/actions/{name}"))

    # ---- runs ------------------------------------------------------------------------------

    def start_run(
        self,
        name: str,
        parameters: dict[str, Any] | None = None,
        *,
        version: int | None = None,
        digest: str | None = None,
        timeout_seconds: int | None = None,
        retries: int | None = None,
        external_user_id: str | None = None,
        idempotency_key: str | None = None,
        project: str | None = None,
    ) -> Run:
        """Start an async run (202); the run, ENQUEUED. With ``idempotency_key`` the request is
        retried after a lost connection, a 429 or a 503 (without one it is sent once)::

            run = hw.start_run("etl", {"day": "2026-01-01", "limit": 10}, idempotency_key="etl-2026-01-01")
            hw.wait(run.id, raise_on_failure=True).ret
        """
        body = run_body(
            parameters, version=version, digest=digest, timeout_seconds=timeout_seconds, retries=retries,
            external_user_id=external_user_id,
        )  # fmt: skip
        headers = {"idempotency-key": idempotency_key} if idempotency_key else None
        path = f"{self._p(project)}/actions/{name}/runs"
        return self._send(Call("POST", path, json=body, headers=headers, parse=_model(Run)))

    def call_sync(
        self,
        name: str,
        sync_action: str,
        parameters: dict[str, Any] | None = None,
        *,
        version: int | None = None,
        digest: str | None = None,
        timeout_seconds: int | None = None,
        external_user_id: str | None = None,
        project: str | None = None,
    ) -> SyncResult:
        """Call a sync action; its answer (``.ret``), or :class:`UserError`, :class:`ApplicationError`,
        :class:`GatewayTimeout`::

            hw.call_sync("db-extractor", "test-connection", {"database": "x.db"}).ret
        """
        body = run_body(
            parameters, version=version, digest=digest, timeout_seconds=timeout_seconds,
            external_user_id=external_user_id,
        )  # fmt: skip
        path = f"{self._p(project)}/actions/{name}/sync/{sync_action}"
        return self._send(Call("POST", path, json=body, timeout=45.0, parse=_model(SyncResult)))

    def list_runs(
        self,
        action: str | None = None,
        status: str | None = None,
        external_user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        project: str | None = None,
    ) -> Page[RunSummary]:
        """One page of runs, newest first (``iter_runs`` walks them all)."""
        params = {"action": action, "status": status, "external_user_id": external_user_id, "limit": limit,
                  "cursor": cursor}  # fmt: skip
        return self._send(Call("GET", f"{self._p(project)}/runs", params=params, parse=_model(Page[RunSummary])))

    def get_run(self, run_id: str, project: str | None = None) -> Run:
        """A run: ``hw.get_run(run_id).status``."""
        return self._send(Call("GET", f"{self._p(project)}/runs/{run_id}", parse=_model(Run)))

    def logs(self, run_id: str, after: int = 0, limit: int = 1000, project: str | None = None) -> LogPage:
        """One page of a run's log: the entries after ``seq`` ``after``."""
        params = {"after": after, "limit": limit}
        return self._send(Call("GET", f"{self._p(project)}/runs/{run_id}/logs", params=params, parse=_model(LogPage)))

    def cancel_run(self, run_id: str, project: str | None = None) -> Run:
        """Cancel a run: TERMINATED if it had not started, else TERMINATING."""
        return self._send(Call("POST", f"{self._p(project)}/runs/{run_id}/cancel", parse=_model(Run)))

    # ---- pipelines (answers as dicts) -------------------------------------------------------

    def put_pipeline(self, name: str, definition: dict[str, Any], project: str | None = None) -> dict[str, Any]:
        """Create or update a pipeline; the new (or unchanged) version."""
        return self._send(Call[dict[str, Any]]("PUT", f"{self._p(project)}/pipelines/{name}", json=definition))

    def get_pipeline(self, name: str, version: int | None = None, project: str | None = None) -> dict[str, Any]:
        """A pipeline's latest version, or ``version``."""
        path = f"{self._p(project)}/pipelines/{name}"
        return self._send(Call[dict[str, Any]]("GET", path, params={"version": version}))

    def delete_pipeline(self, name: str, project: str | None = None) -> None:
        """Delete a pipeline (its executions stay readable)."""
        return self._send(Call[None]("DELETE", f"{self._p(project)}/pipelines/{name}"))

    def get_pipeline_step(self, name: str, step: str, project: str | None = None) -> dict[str, Any]:
        """One step with the status of its last execution."""
        return self._send(Call[dict[str, Any]]("GET", f"{self._p(project)}/pipelines/{name}/steps/{step}"))

    def start_execution(
        self, name: str, variables: dict[str, Any] | None = None, project: str | None = None
    ) -> dict[str, Any]:
        """Start an execution (202), overriding settable variables."""
        path = f"{self._p(project)}/pipelines/{name}/executions"
        return self._send(Call[dict[str, Any]]("POST", path, json={"variables": variables or {}}))

    def list_executions(
        self, name: str, status: str | None = None, limit: int = 50, cursor: str | None = None,
        project: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """One page of a pipeline's executions, newest first."""
        path = f"{self._p(project)}/pipelines/{name}/executions"
        return self._send(
            Call[dict[str, Any]]("GET", path, params={"status": status, "limit": limit, "cursor": cursor})
        )

    def get_execution(self, name: str, execution_id: str, project: str | None = None) -> dict[str, Any]:
        """An execution and the status of each step."""
        path = f"{self._p(project)}/pipelines/{name}/executions/{execution_id}"
        return self._send(Call[dict[str, Any]]("GET", path))

    def approve_execution(self, name: str, execution_id: str, project: str | None = None) -> dict[str, Any]:
        """Approve an execution waiting at its approval gate."""
        path = f"{self._p(project)}/pipelines/{name}/executions/{execution_id}/approve"
        return self._send(Call[dict[str, Any]]("POST", path))

    def terminate_execution(self, name: str, execution_id: str, project: str | None = None) -> dict[str, Any]:
        """Terminate an execution; its ON_TERMINATE steps then run."""
        path = f"{self._p(project)}/pipelines/{name}/executions/{execution_id}/terminate"
        return self._send(Call[dict[str, Any]]("POST", path))

    # ---- operators -------------------------------------------------------------------------

    def stats(self, window: str = "hour", project: str | None = None) -> dict[str, Any]:
        """The dashboard's numbers over the last ``hour`` or ``day``."""
        return self._send(Call[dict[str, Any]]("GET", f"{self._p(project)}/stats", params={"window": window}))

    def metrics(self) -> str:
        """``GET /metrics`` (admin scope) in the Prometheus text format."""
        return self._send(Call("GET", "/metrics", parse=str, is_text=True))

    def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send any request; the decoded JSON answer (None for a 204), or a :class:`HatchwayError`."""
        return self._send(Call[Any](method, path, json=json, params=params, headers=headers, timeout=timeout))


def decode(response: httpx.Response, call: Call[T]) -> T:
    """The result of a successful answer (the caller has raised for errors); :class:`UnexpectedAnswer`
    if it is not what the API specifies."""
    try:
        if call.is_text:
            return call.parse(response.text)
        if response.status_code == 204 or not response.content:
            return call.parse(None)
        return call.parse(response.json())
    except (ValueError, KeyError, TypeError) as err:  # pydantic's ValidationError is a ValueError
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UnexpectedAnswer(f"{call.method} {call.path} answered {response.status_code} with {detail}") from err
