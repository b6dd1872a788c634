"""The asyncio client, :class:`AsyncClient`: the surface of :class:`~hatchway.client.Client`, awaited."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx

from hatchway.client._core import (
    DEFAULT_PROJECT,
    EXECUTION_TERMINAL,
    Call,
    Methods,
    Retry,
    awaitable,
    configure,
    decode,
)
from hatchway.client.errors import (
    HatchwayError,
    RunFailed,
    WaitTimeout,
    raise_for_error,
    transport_error,
)
from hatchway.client.models import TERMINAL, Action, LogEntry, Project, Run, RunSummary

T = TypeVar("T")


class AsyncClient:
    """A hatchway API client for asyncio, with the methods of :class:`~hatchway.client.Client`::

    from hatchway.client import AsyncClient

    async with AsyncClient("http://127.0.0.1:8080", token) as hw:
        run = await hw.start_run("etl", {"day": "2026-01-01"})
        async for entry in hw.follow_logs(run.id):
            print(entry.msg)
        done = await hw.wait(run.id, raise_on_failure=True)
    """

    url: str
    token: str | None
    project: str
    environment: str | None
    retry: Retry

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        project: str = DEFAULT_PROJECT,
        environment: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: bool | str = True,
        *,
        retries: int | Retry = 2,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        where = configure(self, url, token, project, environment, retries)
        self.sleep = sleep
        self._http = httpx.AsyncClient(**where, timeout=timeout, transport=transport, verify=verify)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, call: Call[T]) -> T:
        tries = 0
        while True:
            try:
                try:
                    response = await self._http.request(call.method, call.path, **call.options())
                except httpx.TransportError as err:
                    raise transport_error(self.url, err) from err
                raise_for_error(response)
                return decode(response, call)
            except HatchwayError as err:
                tries += 1
                delay = self.retry.after(call, err, tries)
                if delay is None:
                    raise
                await self.sleep(delay)

    def _send(self, call: Call[T]) -> T:
        return self._request(call)  # type: ignore[return-value]  # a coroutine: see awaitable()

    # the one-request methods, as coroutines (their bodies return _send's coroutine)
    def _p(self, project: str | None) -> str:
        return f"/v1/projects/{project or self.project}"

    health = awaitable(Methods.health)
    create_project = awaitable(Methods.create_project)
    get_project = awaitable(Methods.get_project)
    create_token = awaitable(Methods.create_token)
    list_tokens = awaitable(Methods.list_tokens)
    revoke_token = awaitable(Methods.revoke_token)
    encrypt = awaitable(Methods.encrypt)
    encrypt_values = awaitable(Methods.encrypt_values)
    register_action = awaitable(Methods.register_action)
    get_action = awaitable(Methods.get_action)
    delete_action = awaitable(Methods.delete_action)
    start_run = awaitable(Methods.start_run)
    call_sync = awaitable(Methods.call_sync)
    list_runs = awaitable(Methods.list_runs)
    get_run = awaitable(Methods.get_run)
    logs = awaitable(Methods.logs)
    cancel_run = awaitable(Methods.cancel_run)
    put_pipeline = awaitable(Methods.put_pipeline)
    get_pipeline = awaitable(Methods.get_pipeline)
    delete_pipeline = awaitable(Methods.delete_pipeline)
    get_pipeline_step = awaitable(Methods.get_pipeline_step)
    start_execution = awaitable(Methods.start_execution)
    list_executions = awaitable(Methods.list_executions)
    get_execution = awaitable(Methods.get_execution)
    approve_execution = awaitable(Methods.approve_execution)
    terminate_execution = awaitable(Methods.terminate_execution)
    stats = awaitable(Methods.stats)
    metrics = awaitable(Methods.metrics)
    request = awaitable(Methods.request)

    # ---- lists -----------------------------------------------------------------------------

    async def pages(self, path: str, params: dict[str, Any] | None = None) -> AsyncIterator[dict[str, Any]]:
        """The items of every page of the list at ``path``, as dicts."""
        cursor = None
        while True:
            page = await self.request("GET", path, params={**(params or {}), "cursor": cursor})
            for item in page["items"]:
                yield item
            cursor = page.get("next")
            if not cursor:
                return

    async def iter_runs(
        self, action: str | None = None, status: str | None = None, external_user_id: str | None = None,
        page_size: int = 100, project: str | None = None,
    ) -> AsyncIterator[RunSummary]:  # fmt: skip
        """Every run, newest first: ``[r.id async for r in hw.iter_runs(status="FAILED")]``."""
        params = {"action": action, "status": status, "external_user_id": external_user_id, "limit": page_size}
        async for item in self.pages(f"{self._p(project)}/runs", params):
            yield RunSummary.model_validate(item)

    async def iter_projects(self) -> AsyncIterator[Project]:
        """Every project the token can see (the global admin: all; a project token: its own), by id."""
        async for item in self.pages("/v1/projects", {"limit": 500}):
            yield Project.model_validate(item)

    async def list_projects(self) -> list[Project]:
        """Every project the token can see: ``[p.id for p in hw.list_projects()]``."""
        return [project async for project in self.iter_projects()]

    async def iter_actions(self, tag: str | None = None, project: str | None = None) -> AsyncIterator[Action]:
        """Every action (its latest version)."""
        async for item in self.pages(f"{self._p(project)}/actions", {"tag": tag, "limit": 500}):
            yield Action.model_validate(item)

    async def iter_versions(self, name: str, project: str | None = None) -> AsyncIterator[Action]:
        """Every version of an action."""
        async for item in self.pages(f"{self._p(project)}/actions/{name}/versions", {"limit": 500}):
            yield Action.model_validate(item)

    async def iter_executions(
        self, name: str, status: str | None = None, project: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every execution of a pipeline, newest first."""
        async for item in self.pages(f"{self._p(project)}/pipelines/{name}/executions", {"status": status}):
            yield item

    async def list_actions(self, tag: str | None = None, project: str | None = None) -> list[Action]:
        """Every action (latest versions)."""
        return [action async for action in self.iter_actions(tag, project)]

    async def list_versions(self, name: str, project: str | None = None) -> list[Action]:
        """Every version of an action, oldest first."""
        return [action async for action in self.iter_versions(name, project)]

    async def list_pipelines(self, project: str | None = None) -> list[dict[str, Any]]:
        """Every pipeline (latest versions)."""
        return [item async for item in self.pages(f"{self._p(project)}/pipelines", {"limit": 500})]

    # ---- logs and waiting ------------------------------------------------------------------

    async def iter_logs(self, run_id: str, after: int = 0, project: str | None = None) -> AsyncIterator[LogEntry]:
        """Every entry of a run's log written so far, after ``seq`` ``after``."""
        while True:
            page = await self.logs(run_id, after=after, project=project)
            for entry in page.items:
                after = entry.seq or after
                yield entry
            if not page.next:
                return

    async def tail_logs(self, run_id: str, count: int, project: str | None = None) -> list[LogEntry]:
        """The last ``count`` entries of a run's log."""
        return list(deque([entry async for entry in self.iter_logs(run_id, project=project)], maxlen=count))

    async def follow_logs(
        self, run_id: str, poll_seconds: float = 0.25, timeout: float | None = None, project: str | None = None,
        after: int = 0,
    ) -> AsyncIterator[LogEntry]:  # fmt: skip
        """Log entries as they arrive, until the run has ended and its log is drained (or ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            async for entry in self.iter_logs(run_id, after, project):
                after = entry.seq or after
                yield entry
            if (await self.get_run(run_id, project=project)).status in TERMINAL:
                async for entry in self.iter_logs(run_id, after, project):
                    after = entry.seq or after
                    yield entry
                return
            if deadline is not None and time.monotonic() > deadline:
                return
            await self.sleep(poll_seconds)

    async def wait(
        self, run_id: str, timeout: float = 3600.0, poll_seconds: float = 0.1, project: str | None = None,
        *, raise_on_failure: bool = False,
    ) -> Run:  # fmt: skip
        """Poll a run until it ends (see :meth:`Client.wait`)."""
        deadline = time.monotonic() + timeout
        delay = min(poll_seconds, 0.05)
        while True:
            run = await self.get_run(run_id, project=project)
            if run.status in TERMINAL:
                if raise_on_failure and run.status != "SUCCESSFUL":
                    raise RunFailed(run)
                return run
            if time.monotonic() > deadline:
                raise WaitTimeout(f"run {run_id} is still {run.status} after {timeout:g} s", body={"runId": run_id})
            await self.sleep(delay)
            delay = min(delay * 1.5, max(poll_seconds, 1.0))

    async def wait_execution(
        self, name: str, execution_id: str, timeout: float = 3600.0, poll_seconds: float = 0.2,
        project: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Poll an execution until it ends (:class:`WaitTimeout` after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            execution = await self.get_execution(name, execution_id, project=project)
            if execution["status"] in EXECUTION_TERMINAL:
                return execution
            if time.monotonic() > deadline:
                raise WaitTimeout(f"execution {execution_id} is still {execution['status']} after {timeout:g} s")
            await self.sleep(poll_seconds)
