"""Python client of the hatchway HTTP API (httpx), covering every route.

Errors come back as typed exceptions that carry the API's error body::

    from hatchway.client import Client, UserErrorResponse

    with Client("http://127.0.0.1:8080", token) as hw:
        hw.register_action(spec)
        try:
            hw.call_sync("db-extractor", "test-connection", {"database": "x.db"})
        except UserErrorResponse as err:
            print(err.message)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_PROJECT = "proj_local"
TERMINAL = {"SUCCESSFUL", "FAILED", "TERMINATED"}
EXECUTION_TERMINAL = {"SUCCESSFUL", "WARNING", "FAILED", "TERMINATED"}


class ApiError(Exception):
    """An error answer of the API; ``body`` is its error document."""

    status_code: int = 0

    def __init__(self, status_code: int, body: dict[str, Any], headers: httpx.Headers | None = None) -> None:
        self.status_code = status_code
        self.body = body
        self.headers = headers or httpx.Headers()
        self.error: str = body.get("error", "")
        self.message: str = body.get("message", "")
        self.exception_id: str | None = body.get("exceptionId")
        self.run_id: str | None = body.get("runId")
        self.details: list[dict[str, Any]] = body.get("details") or []
        super().__init__(f"{status_code} {self.error}: {self.message}")

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        return float(value) if value else None


class UserErrorResponse(ApiError):
    """400: the action reported a user error, or the request cannot be honoured."""


class UnauthorizedResponse(ApiError):
    """401."""


class ForbiddenResponse(ApiError):
    """403."""


class NotFoundResponse(ApiError):
    """404."""


class ConflictResponse(ApiError):
    """409."""


class PayloadTooLargeResponse(ApiError):
    """413."""


class ValidationErrorResponse(ApiError):
    """422: ``details`` says where."""


class TooManyRequestsResponse(ApiError):
    """429: try again after ``retry_after`` seconds."""


class ApplicationErrorResponse(ApiError):
    """500: quote ``exception_id``."""


class UnavailableResponse(ApiError):
    """503: a dependency is down; nothing was started."""


class TimeoutResponse(ApiError):
    """504: the sync action did not answer in time."""


ERRORS: dict[int, type[ApiError]] = {
    400: UserErrorResponse,
    401: UnauthorizedResponse,
    403: ForbiddenResponse,
    404: NotFoundResponse,
    409: ConflictResponse,
    413: PayloadTooLargeResponse,
    422: ValidationErrorResponse,
    429: TooManyRequestsResponse,
    500: ApplicationErrorResponse,
    503: UnavailableResponse,
    504: TimeoutResponse,
}


def read_token(home: str | os.PathLike[str] | None = None) -> str | None:
    """The bootstrap token a local gateway wrote to ``$HATCHWAY_HOME/token``."""
    base = Path(home or os.environ.get("HATCHWAY_HOME") or "~/.hatchway").expanduser()
    try:
        return (base / "token").read_text().strip() or None
    except OSError:
        return None


class Client:
    """A hatchway API client bound to one project and environment."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        project: str = DEFAULT_PROJECT,
        environment: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
    ) -> None:
        self.url = (url or os.environ.get("HATCHWAY_URL") or DEFAULT_URL).rstrip("/")
        self.token = token or os.environ.get("HATCHWAY_TOKEN") or read_token()
        self.project = project
        self.environment = environment
        headers = {"user-agent": "hatchway-client"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        if environment:
            headers["x-hatchway-environment"] = environment
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport, verify=verify
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- plumbing --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Send a request; the decoded JSON answer, or a typed :class:`ApiError`."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = timeout
        response = self._http.request(method, path, json=json, params=query, headers=headers, **extra)
        _raise_for_error(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _p(self, project: str | None) -> str:
        return f"/v1/projects/{project or self.project}"

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            page = self.request("GET", path, params={**params, "cursor": cursor})
            yield from page["items"]
            cursor = page.get("next")
            if not cursor:
                return

    # ---- meta, projects, tokens, secrets ----------------------------------------------------

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/health")
        return result

    def create_project(self, name: str, project_id: str | None = None) -> dict[str, Any]:
        body = {"name": name, **({"id": project_id} if project_id else {})}
        result: dict[str, Any] = self.request("POST", "/v1/projects", json=body)
        return result

    def get_project(self, project: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", self._p(project))
        return result

    def create_token(
        self,
        scopes: list[str],
        environments: list[str] | None = None,
        expires_in_seconds: int | None = None,
        name: str | None = None,
        project: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"scopes": scopes}
        if environments is not None:
            body["environments"] = environments
        if expires_in_seconds is not None:
            body["expires_in_seconds"] = expires_in_seconds
        if name is not None:
            body["name"] = name
        result: dict[str, Any] = self.request("POST", f"{self._p(project)}/tokens", json=body)
        return result

    def list_tokens(self, project: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", f"{self._p(project)}/tokens")["items"]
        return result

    def revoke_token(self, token_id: str, project: str | None = None) -> None:
        self.request("DELETE", f"{self._p(project)}/tokens/{token_id}")

    def encrypt(self, value: str, action: str | None = None, project: str | None = None) -> str:
        body = {"value": value, **({"action": action} if action else {})}
        result: str = self.request("POST", f"{self._p(project)}/encrypt", json=body)["ciphertext"]
        return result

    def encrypt_values(
        self, values: dict[str, str], action: str | None = None, project: str | None = None
    ) -> dict[str, str]:
        body = {"values": values, **({"action": action} if action else {})}
        result: dict[str, str] = self.request("POST", f"{self._p(project)}/encrypt", json=body)["values"]
        return result

    # ---- actions ---------------------------------------------------------------------------

    def register_action(self, spec: dict[str, Any], project: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"{self._p(project)}/actions", json=spec)
        return result

    def list_actions(self, tag: str | None = None, project: str | None = None) -> list[dict[str, Any]]:
        return list(self._pages(f"{self._p(project)}/actions", {"tag": tag, "limit": 500}))

    def get_action(
        self, name: str, version: int | None = None, digest: str | None = None, project: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "GET", f"{self._p(project)}/actions/{name}", params={"version": version, "digest": digest}
        )
        return result

    def list_versions(self, name: str, project: str | None = None) -> list[dict[str, Any]]:
        return list(self._pages(f"{self._p(project)}/actions/{name}/versions", {"limit": 500}))

    def delete_action(self, name: str, project: str | None = None) -> None:
        self.request("DELETE", f"{self._p(project)}/actions/{name}")

    # ---- runs ------------------------------------------------------------------------------

    @staticmethod
    def _run_body(parameters: dict[str, Any] | None, **options: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"parameters": parameters or {}}
        body.update({k: v for k, v in options.items() if v is not None})
        return body

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
    ) -> dict[str, Any]:
        """Start an async run (202); the run in status ENQUEUED."""
        body = self._run_body(
            parameters, version=version, digest=digest, timeout_seconds=timeout_seconds, retries=retries,
            external_user_id=external_user_id,
        )  # fmt: skip
        headers = {"idempotency-key": idempotency_key} if idempotency_key else None
        result: dict[str, Any] = self.request(
            "POST", f"{self._p(project)}/actions/{name}/runs", json=body, headers=headers
        )
        return result

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
    ) -> dict[str, Any]:
        """Call a sync action; the answer ``{run_id, status, ret, exports, os, duration_ms}``."""
        body = self._run_body(
            parameters, version=version, digest=digest, timeout_seconds=timeout_seconds,
            external_user_id=external_user_id,
        )  # fmt: skip
        result: dict[str, Any] = self.request(
            "POST", f"{self._p(project)}/actions/{name}/sync/{sync_action}", json=body, timeout=45.0
        )
        return result

    def list_runs(
        self,
        action: str | None = None,
        status: str | None = None,
        external_user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        project: str | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "GET",
            f"{self._p(project)}/runs",
            params={"action": action, "status": status, "external_user_id": external_user_id, "limit": limit,
                    "cursor": cursor},
        )  # fmt: skip
        return result

    def get_run(self, run_id: str, project: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"{self._p(project)}/runs/{run_id}")
        return result

    def logs(self, run_id: str, after: int = 0, limit: int = 1000, project: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "GET", f"{self._p(project)}/runs/{run_id}/logs", params={"after": after, "limit": limit}
        )
        return result

    def follow_logs(
        self, run_id: str, poll_seconds: float = 0.25, timeout: float | None = None, project: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Log entries as they arrive, until the run has ended and its log is drained."""
        after = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            page = self.logs(run_id, after=after, project=project)
            for entry in page["items"]:
                after = entry["seq"]
                yield entry
            if page.get("next"):
                continue
            if self.get_run(run_id, project=project)["status"] in TERMINAL:
                final = self.logs(run_id, after=after, project=project)
                for entry in final["items"]:
                    after = entry["seq"]
                    yield entry
                if not final.get("next"):
                    return
                continue
            if deadline is not None and time.monotonic() > deadline:
                return
            time.sleep(poll_seconds)

    def cancel_run(self, run_id: str, project: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"{self._p(project)}/runs/{run_id}/cancel")
        return result

    # ---- pipelines -------------------------------------------------------------------------

    def put_pipeline(self, name: str, definition: dict[str, Any], project: str | None = None) -> dict[str, Any]:
        """Create or update a pipeline; the new (or unchanged) version."""
        result: dict[str, Any] = self.request("PUT", f"{self._p(project)}/pipelines/{name}", json=definition)
        return result

    def list_pipelines(self, project: str | None = None) -> list[dict[str, Any]]:
        return list(self._pages(f"{self._p(project)}/pipelines", {"limit": 500}))

    def get_pipeline(self, name: str, version: int | None = None, project: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "GET", f"{self._p(project)}/pipelines/{name}", params={"version": version}
        )
        return result

    def delete_pipeline(self, name: str, project: str | None = None) -> None:
        self.request("DELETE", f"{self._p(project)}/pipelines/{name}")

    def get_pipeline_step(self, name: str, step: str, project: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"{self._p(project)}/pipelines/{name}/steps/{step}")
        return result

    def start_execution(
        self, name: str, variables: dict[str, Any] | None = None, project: str | None = None
    ) -> dict[str, Any]:
        """Start an execution (202), overriding settable variables."""
        result: dict[str, Any] = self.request(
            "POST", f"{self._p(project)}/pipelines/{name}/executions", json={"variables": variables or {}}
        )
        return result

    def list_executions(
        self, name: str, status: str | None = None, limit: int = 50, cursor: str | None = None,
        project: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        result: dict[str, Any] = self.request(
            "GET",
            f"{self._p(project)}/pipelines/{name}/executions",
            params={"status": status, "limit": limit, "cursor": cursor},
        )
        return result

    def get_execution(self, name: str, execution_id: str, project: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"{self._p(project)}/pipelines/{name}/executions/{execution_id}")
        return result

    def approve_execution(self, name: str, execution_id: str, project: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", f"{self._p(project)}/pipelines/{name}/executions/{execution_id}/approve"
        )
        return result

    def terminate_execution(self, name: str, execution_id: str, project: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", f"{self._p(project)}/pipelines/{name}/executions/{execution_id}/terminate"
        )
        return result

    def wait_execution(
        self, name: str, execution_id: str, timeout: float = 3600.0, poll_seconds: float = 0.2,
        project: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Poll an execution until it ends (raises ``TimeoutError`` after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            execution = self.get_execution(name, execution_id, project=project)
            if execution["status"] in EXECUTION_TERMINAL:
                return execution
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_id} is still {execution['status']} after {timeout:g} s")
            time.sleep(poll_seconds)

    # ---- operators -------------------------------------------------------------------------

    def stats(self, window: str = "hour", project: str | None = None) -> dict[str, Any]:
        """The dashboard's numbers over the last ``hour`` or ``day``."""
        result: dict[str, Any] = self.request("GET", f"{self._p(project)}/stats", params={"window": window})
        return result

    def metrics(self) -> str:
        """``GET /metrics`` (admin scope) in the Prometheus text format."""
        response = self._http.get("/metrics")
        _raise_for_error(response)
        return response.text

    def wait(
        self, run_id: str, timeout: float = 3600.0, poll_seconds: float = 0.1, project: str | None = None
    ) -> dict[str, Any]:
        """Poll a run until it reaches a terminal status (raises ``TimeoutError`` after ``timeout``)."""
        deadline = time.monotonic() + timeout
        delay = min(poll_seconds, 0.05)
        while True:
            run = self.get_run(run_id, project=project)
            if run["status"] in TERMINAL:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is still {run['status']} after {timeout:g} s")
            time.sleep(delay)
            delay = min(delay * 1.5, max(poll_seconds, 1.0))


def _raise_for_error(response: httpx.Response) -> None:
    """Raise the typed :class:`ApiError` for an error answer."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.reason_phrase, "message": response.text[:500]}
    raise ERRORS.get(response.status_code, ApiError)(response.status_code, body, response.headers)
