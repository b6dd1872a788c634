"""Actions: register versions (inheritance applied, executors prepared), resolve them, list, delete.

:meth:`ActionService.resolve` is what every run, sync call and pipeline step goes through: a
registered version by name, number or digest - or a derived action (``pipeline:<p>/<step>``) from
its :class:`~hatchway.ports.ActionSource` - with its effective spec. Versions are immutable, so
parsed specs are cached by digest.
"""

from __future__ import annotations

import builtins
import logging
import threading
from collections.abc import Mapping
from typing import Any

from hatchway.domain.actions import MAX_INHERIT_DEPTH, SPEC_CACHE_SIZE, ActionRecord, Resolved
from hatchway.domain.records import Page, Registered
from hatchway.domain.spec import DIGEST_RE, ActionSpec, parse_spec
from hatchway.domain.tenants import Principal
from hatchway.errors import BadRequest, NotFound, ValidationFailed
from hatchway.ports import ActionRepo, ActionSource
from hatchway.services.auth import Auth, Tenants
from hatchway.services.placement import Placement

log = logging.getLogger("hatchway.actions")


class ActionService:
    """Action versions of a project and environment."""

    def __init__(
        self,
        repo: ActionRepo,
        auth: Auth,
        tenants: Tenants,
        placement: Placement,
        derived: Mapping[str, ActionSource],
    ) -> None:
        self.repo = repo
        self.auth = auth
        self.tenants = tenants
        self.placement = placement
        #: actions that are not registered but derived ("pipeline:<pipeline>/<step>"), by name prefix
        self.derived = dict(derived)
        self._specs: dict[str, ActionSpec] = {}
        self._specs_lock = threading.Lock()

    def register(
        self, principal: Principal, project_id: str, environment: str, document: Any
    ) -> Registered[ActionRecord]:
        self.auth.authorize(principal, project_id, environment, "actions:write")
        self.tenants.require_project(project_id)
        spec = document if isinstance(document, ActionSpec) else parse_spec(document)
        if spec.inherits is not None:
            self._check_inherits(project_id, environment, spec)
        effective = self._effective(project_id, environment, spec)
        self.placement.prepare(project_id, effective, environment)  # before storing: a refusal stores nothing
        record, created = self.repo.register_version(project_id, environment, spec.normalised(), spec.digest())
        return Registered(record, created)

    def _check_inherits(self, project_id: str, environment: str, spec: ActionSpec) -> None:
        if spec.inherits is None:
            return
        if spec.inherits.owner not in (None, project_id):
            raise ValidationFailed.at(["body", "inherits", "owner"], "an action can inherit only from its own project")
        if spec.inherits.name == spec.name:
            raise ValidationFailed.at(["body", "inherits", "name"], "an action cannot inherit from itself")
        try:
            self._effective(project_id, environment, spec)
        except NotFound:
            raise ValidationFailed.at(
                ["body", "inherits"], f"the inherited action {spec.inherits.name} (or that digest) does not exist"
            ) from None

    def _effective(self, project_id: str, environment: str, spec: ActionSpec, depth: int = 0) -> ActionSpec:
        """Apply inheritance: the parent's image, container and parameters, pinned by digest if given."""
        if spec.inherits is None:
            return spec
        if depth >= MAX_INHERIT_DEPTH:
            raise ValidationFailed.at(["body", "inherits"], f"inheritance is deeper than {MAX_INHERIT_DEPTH} levels")
        ref = spec.inherits
        parent_record = self.repo.get_action(project_id, environment, ref.name, digest=ref.digest)
        if parent_record is None:
            raise NotFound(f"the inherited action {ref.name} does not exist")
        parent = self._effective(project_id, environment, self._parsed(parent_record), depth + 1)
        return spec.with_parent(parent)

    def _parsed(self, record: ActionRecord) -> ActionSpec:
        """The spec of a stored version; versions are immutable, so parsed specs are cached by digest."""
        spec = self._specs.get(record.digest)
        if spec is None:
            spec = ActionSpec.model_validate(record.spec)
            with self._specs_lock:
                if len(self._specs) >= SPEC_CACHE_SIZE:
                    self._specs.pop(next(iter(self._specs)))
                self._specs[record.digest] = spec
        return spec

    def resolve(
        self,
        project_id: str,
        environment: str,
        name: str,
        version: int | None = None,
        digest: str | None = None,
        include_deleted: bool = False,
    ) -> Resolved:
        """An action version with its effective spec; no authorisation (the caller's use case did it)."""
        if digest is not None and not DIGEST_RE.match(digest):
            raise ValidationFailed.at(["digest"], "a digest is 'sha256:' followed by 64 lowercase hex digits")
        prefix, derived, _ = name.partition(":")
        if derived and prefix in self.derived:
            return self.derived[prefix].resolve(project_id, environment, name, version, digest)
        record = self.repo.get_action(project_id, environment, name, version, digest, include_deleted)
        if record is None:
            what = f" version {version}" if version else (f" with digest {digest}" if digest else "")
            raise NotFound(f"no action {name}{what}")
        spec = self._parsed(record)
        try:
            return Resolved(record, self._effective(project_id, environment, spec))
        except NotFound as exc:
            raise BadRequest(f"action {name} inherits from an action that no longer exists ({exc.message})") from None

    def get(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        name: str,
        version: int | None = None,
        digest: str | None = None,
    ) -> ActionRecord:
        self.auth.authorize(principal, project_id, environment, "actions:read")
        return self.resolve(project_id, environment, name, version, digest).record

    def list(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        limit: int,
        cursor: str | None,
        tag: str | None = None,
    ) -> Page[ActionRecord]:
        self.auth.authorize(principal, project_id, environment, "actions:read")
        page = self.repo.list_actions(project_id, environment, limit, cursor, tag)
        if not page.items and cursor is None:
            self.tenants.require_project(project_id)  # nothing listed: a project that does not exist is a 404
        return page

    def versions(
        self, principal: Principal, project_id: str, environment: str, name: str, limit: int, cursor: str | None
    ) -> Page[ActionRecord]:
        self.auth.authorize(principal, project_id, environment, "actions:read")
        return self.repo.list_versions(project_id, environment, name, limit, cursor)

    def delete(self, principal: Principal, project_id: str, environment: str, name: str) -> None:
        """Delete every version (its runs stay readable), then what registration made for each
        elsewhere - a function, a job or task definition. That second part is tidying: the delete
        stands if it fails (logged; ``hatchway aws teardown`` finds what is left)."""
        self.auth.authorize(principal, project_id, environment, "actions:write")
        specs = self._effective_versions(project_id, environment, name)
        if not self.repo.delete_action(project_id, environment, name):
            raise NotFound(f"no action {name}")
        for spec in specs:
            try:
                self.placement.release(project_id, spec, environment)
            except Exception as exc:
                log.warning(
                    "what a deleted action version had elsewhere was not removed",
                    extra={
                        "action": name,
                        "project_id": project_id,
                        "reason": getattr(exc, "message", type(exc).__name__),
                    },
                )

    def _effective_versions(self, project_id: str, environment: str, name: str) -> builtins.list[ActionSpec]:
        specs: builtins.list[ActionSpec] = []
        cursor: str | None = None
        while True:
            page = self.repo.list_versions(project_id, environment, name, 100, cursor)
            for record in page.items:
                try:
                    specs.append(self._effective(project_id, environment, self._parsed(record)))
                except (NotFound, ValidationFailed):
                    continue  # its parent is gone: what it had is for teardown to find
            cursor = page.next
            if not cursor:
                return specs
