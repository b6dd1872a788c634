"""Pipedream Connect's ``actions/run``: the action's ``run`` while the caller waits.

Connect SDKs retry on 5xx, 408, 409, 429, so a request is identified by its caller and content (or
its ``Idempotency-Key``): a repeat within ``connect_replay_seconds`` of an error answer gets that
answer and never runs the action a second time, and a repeat arriving while the first is running
waits for its answer. A success is never retried by an SDK, so a repeat after it is a deliberate
new call and runs the action again - unless it carries the same ``Idempotency-Key``, which replays
every answer.
"""

from __future__ import annotations

from typing import Any

from hatchway.config import IdempotencySettings
from hatchway.domain.actions import Resolved
from hatchway.domain.records import MAX_PAGE
from hatchway.domain.runs import RunRequest
from hatchway.domain.spec import RUN_ACTION
from hatchway.domain.tenants import Principal
from hatchway.errors import NotFound
from hatchway.ports import ActionRepo
from hatchway.services.actions import ActionService
from hatchway.services.auth import Auth
from hatchway.services.idempotency import Idempotency, same
from hatchway.services.runs import RunService


class ConnectRuns:
    """Connect's run call: its answer shape ``{exports, os, ret, stash_id}`` and its replay policy."""

    def __init__(
        self,
        runs: RunService,
        actions: ActionService,
        versions: ActionRepo,
        idempotency: Idempotency,
        auth: Auth,
        settings: IdempotencySettings,
    ) -> None:
        self.runs = runs
        self.actions = actions
        self.versions = versions
        self.idempotency = idempotency
        self.auth = auth
        self.settings = settings

    def run(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        action: str,
        version: str | None,
        request: RunRequest,
        idempotency_key: str | None = None,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        self.auth.authorize(principal, project_id, environment, "runs:write")
        resolved = self._version(project_id, environment, action, version)

        def work(_: str) -> dict[str, Any]:
            outcome = self.runs.run_sync(project_id, environment, resolved, RUN_ACTION, request)
            return {
                "exports": outcome.exports,
                "os": [{k: v for k, v in entry.to_api().items() if k != "seq"} for entry in outcome.os],
                "ret": outcome.ret,
                "stash_id": outcome.stash_id,
            }

        settings = self.settings
        if settings.connect_replay_seconds <= 0 and idempotency_key is None:
            return work("")
        fingerprint = request.fingerprint(f"connect/{action}/{version}")
        caller = principal.token_id or "admin"
        scope = f"connect/{project_id}/{environment}/{caller}/{idempotency_key or fingerprint}"
        ttl = settings.connect_replay_seconds if idempotency_key is None else settings.idempotency_seconds
        keyed = idempotency_key is not None
        return self.idempotency.once(
            scope,
            fingerprint,
            ttl,
            work,
            encode=same,
            decode=same,
            keep_errors=True,
            replay_success=keyed,
            deadline=deadline,
        )

    def _version(self, project_id: str, environment: str, name: str, version: str | None) -> Resolved:
        """A Connect ``version``: latest, a version number, or the ``metadata.version`` of a version."""
        if version in (None, "", "latest"):
            return self.actions.resolve(project_id, environment, name)
        assert version is not None  # noqa: S101 - narrowed above
        if version.isdigit():
            return self.actions.resolve(project_id, environment, name, int(version))
        for record in self.versions.list_versions(project_id, environment, name, MAX_PAGE, None).items:
            if str(record.spec.get("metadata", {}).get("version")) == version:
                return self.actions.resolve(project_id, environment, name, record.version)
        raise NotFound(f"action {name} has no version {version}")
