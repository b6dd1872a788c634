"""The blocking client, :class:`Client`."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx

from hatchway.client._core import (
    DEFAULT_PROJECT,
    EXECUTION_TERMINAL,
    Call,
    Methods,
    Retry,
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


class Client(Methods):
    """A hatchway API client bound to one project and environment::

        from hatchway.client import Client, NotFound, RunFailed

        with Client("http://127.0.0.1:8080", token, project="proj_local") as hw:
            run = hw.start_run("etl", {"day": "2026-01-01"})
            try:
                done = hw.wait(run.id, raise_on_failure=True)
            except RunFailed as failed:
                print(failed.run.error.message)
            for entry in hw.iter_logs(run.id):
                print(entry.msg)

    ``url`` and ``token`` default to ``HATCHWAY_URL``/``HATCHWAY_TOKEN``, then to the local gateway
    (``http://127.0.0.1:8080`` and ``$HATCHWAY_HOME/token``). ``retries`` is how often a request
    that met a 429, a 503 or no connection is tried again (see :class:`Retry`); ``sleep`` is
    what waits between tries and polls.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        project: str = DEFAULT_PROJECT,
        environment: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
        *,
        retries: int | Retry = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        where = configure(self, url, token, project, environment, retries)
        self.sleep = sleep
        self._http = httpx.Client(**where, timeout=timeout, transport=transport, verify=verify)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call[T]) -> T:
        tries = 0
        while True:
            try:
                try:
                    response = self._http.request(call.method, call.path, **call.options())
                except httpx.TransportError as err:
                    raise transport_error(self.url, err) from err
                raise_for_error(response)
                return decode(response, call)
            except HatchwayError as err:
                tries += 1
                delay = self.retry.after(call, err, tries)
                if delay is None:
                    raise
                self.sleep(delay)

    # ---- lists -----------------------------------------------------------------------------

    def pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """The items of every page of the list at ``path`` (cursor after cursor), as dicts."""
        cursor = None
        while True:
            page = self.request("GET", path, params={**(params or {}), "cursor": cursor})
            yield from page["items"]
            cursor = page.get("next")
            if not cursor:
                return

    def iter_runs(
        self, action: str | None = None, status: str | None = None, external_user_id: str | None = None,
        page_size: int = 100, project: str | None = None,
    ) -> Iterator[RunSummary]:  # fmt: skip
        """Every run, newest first, page after page: ``[r.id for r in hw.iter_runs(status="FAILED")]``."""
        params = {"action": action, "status": status, "external_user_id": external_user_id, "limit": page_size}
        for item in self.pages(f"{self._p(project)}/runs", params):
            yield RunSummary.model_validate(item)

    def iter_projects(self) -> Iterator[Project]:
        """Every project the token can see (the global admin: all; a project token: its own), by id."""
        for item in self.pages("/v1/projects", {"limit": 500}):
            yield Project.model_validate(item)

    def list_projects(self) -> list[Project]:
        """Every project the token can see: ``[p.id for p in hw.list_projects()]``."""
        return list(self.iter_projects())

    def iter_actions(self, tag: str | None = None, project: str | None = None) -> Iterator[Action]:
        """Every action (its latest version), page after page."""
        for item in self.pages(f"{self._p(project)}/actions", {"tag": tag, "limit": 500}):
            yield Action.model_validate(item)

    def iter_versions(self, name: str, project: str | None = None) -> Iterator[Action]:
        """Every version of an action."""
        for item in self.pages(f"{self._p(project)}/actions/{name}/versions", {"limit": 500}):
            yield Action.model_validate(item)

    def iter_executions(
        self, name: str, status: str | None = None, project: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every execution of a pipeline, newest first."""
        yield from self.pages(f"{self._p(project)}/pipelines/{name}/executions", {"status": status, "limit": 500})

    def list_actions(self, tag: str | None = None, project: str | None = None) -> list[Action]:
        """Every action (latest versions), optionally only those tagged ``tag``."""
        return list(self.iter_actions(tag, project))

    def list_versions(self, name: str, project: str | None = None) -> list[Action]:
        """Every version of an action, oldest first."""
        return list(self.iter_versions(name, project))

    def list_pipelines(self, project: str | None = None) -> list[dict[str, Any]]:
        """Every pipeline (latest versions)."""
        return list(self.pages(f"{self._p(project)}/pipelines", {"limit": 500}))

    # ---- logs and waiting ------------------------------------------------------------------

    def iter_logs(self, run_id: str, after: int = 0, project: str | None = None) -> Iterator[LogEntry]:
        """Every entry of a run's log written so far, after ``seq`` ``after``."""
        while True:
            page = self.logs(run_id, after=after, project=project)
            for entry in page.items:
                after = entry.seq or after
                yield entry
            if not page.next:
                return

    def tail_logs(self, run_id: str, count: int, project: str | None = None) -> list[LogEntry]:
        """The last ``count`` entries of a run's log."""
        return list(deque(self.iter_logs(run_id, project=project), maxlen=count))

    def follow_logs(
        self, run_id: str, poll_seconds: float = 0.25, timeout: float | None = None, project: str | None = None,
        after: int = 0,
    ) -> Iterator[LogEntry]:  # fmt: skip
        """Log entries as they arrive, until the run has ended and its log is drained (or ``timeout``)::

        for entry in hw.follow_logs(run.id):
            print(entry.k, entry.msg)
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for entry in self.iter_logs(run_id, after, project):
                after = entry.seq or after
                yield entry
            if self.get_run(run_id, project=project).status in TERMINAL:
                # the run's last lines were written before its end: one more read finds them all
                for entry in self.iter_logs(run_id, after, project):
                    after = entry.seq or after
                    yield entry
                return
            if deadline is not None and time.monotonic() > deadline:
                return
            self.sleep(poll_seconds)

    def wait(
        self, run_id: str, timeout: float = 3600.0, poll_seconds: float = 0.1, project: str | None = None,
        *, raise_on_failure: bool = False,
    ) -> Run:  # fmt: skip
        """Poll a run until it ends; the run. :class:`WaitTimeout` after ``timeout`` seconds, and
        with ``raise_on_failure`` :class:`RunFailed` when it ended FAILED or TERMINATED::

            run = hw.wait(hw.start_run("etl").id, timeout=600, raise_on_failure=True)
        """
        deadline = time.monotonic() + timeout
        delay = min(poll_seconds, 0.05)
        while True:
            run = self.get_run(run_id, project=project)
            if run.status in TERMINAL:
                if raise_on_failure and run.status != "SUCCESSFUL":
                    raise RunFailed(run)
                return run
            if time.monotonic() > deadline:
                raise WaitTimeout(f"run {run_id} is still {run.status} after {timeout:g} s", body={"runId": run_id})
            self.sleep(delay)
            delay = min(delay * 1.5, max(poll_seconds, 1.0))

    def wait_execution(
        self, name: str, execution_id: str, timeout: float = 3600.0, poll_seconds: float = 0.2,
        project: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Poll an execution until it ends (:class:`WaitTimeout` after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            execution = self.get_execution(name, execution_id, project=project)
            if execution["status"] in EXECUTION_TERMINAL:
                return execution
            if time.monotonic() > deadline:
                raise WaitTimeout(f"execution {execution_id} is still {execution['status']} after {timeout:g} s")
            self.sleep(poll_seconds)


__all__ = ["Client", "HatchwayError"]
