"""Use cases of the gateway, free of any transport.

:class:`Gateway` is what the HTTP API, the worker pool and the Lambda handlers call: authenticate
and authorise, register and resolve action versions, accept async runs, answer sync calls, run one
attempt of a claimed run, cancel, read logs. It talks to a store, an executor and a secret box it
is given, and raises only :mod:`hatchway.errors`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets as pysecrets
import shutil
import time
from collections.abc import Callable
from typing import Any

from hatchway import ports
from hatchway.blobs import LocalBlobStore
from hatchway.compat.connect import ConnectRuns
from hatchway.config import Settings
from hatchway.domain.actions import ActionRecord, Resolved
from hatchway.domain.clock import SystemClock
from hatchway.domain.pipelines.inline import PREFIX
from hatchway.domain.records import Page
from hatchway.domain.runs import (
    LogEntry,
    Run,
    RunRequest,
    iso,
)
from hatchway.domain.stats import Dashboard
from hatchway.domain.tenants import Principal, Project, TokenRecord
from hatchway.executors.base import BaseExecutor
from hatchway.executors.journal import owner_alive, start_time
from hatchway.faults import CrashPoints
from hatchway.net import HttpCallbackSender, allowed_networks
from hatchway.observability import TracingTelemetry
from hatchway.observability.metrics import make_recorder
from hatchway.observability.tracing import instrument_store
from hatchway.ports import BlobStore
from hatchway.secrets import LazySecretBox
from hatchway.secrets.box import SecretBox, local_blob_cipher, read_or_create_token_file
from hatchway.secrets.redact import ActiveRedaction
from hatchway.services.actions import ActionService
from hatchway.services.attempts import AttemptService
from hatchway.services.auth import Auth, Tenants
from hatchway.services.extras import CacheTags, Callbacks, SessionTypes
from hatchway.services.files import FileService, FileStashes, StoredFile
from hatchway.services.idempotency import Idempotency, same
from hatchway.services.pipelines.steps import InlineActions
from hatchway.services.placement import Placement
from hatchway.services.runs import RunIntake, RunService
from hatchway.services.stats import StatsService
from hatchway.store.base import BaseStore
from hatchway.store.legacy import SingleObjectRepos

log = logging.getLogger("hatchway")


class Gateway:
    """The gateway's use cases over a store, an executor and a secret box."""

    def __init__(
        self,
        settings: Settings,
        store: BaseStore,
        executors: Placement | BaseExecutor,
        secret_box: SecretBox | Callable[[], SecretBox],
        clock: Callable[[], float] = time.time,
        blobs: BlobStore | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.executors = executors if isinstance(executors, Placement) else Placement(executors)
        if self.executors.http is None:
            from hatchway.executors.http import HttpExecutor

            self.executors.http = HttpExecutor()
        self._box: ports.SecretBox = secret_box if isinstance(secret_box, SecretBox) else LazySecretBox(secret_box)
        self._blobs = blobs or LocalBlobStore(settings.blob_dir, lambda: local_blob_cipher(settings.key_path))
        #: each attempt's redactor, its secrets kept out of the gateway's log lines while it runs
        self.redaction = ActiveRedaction()
        self.clock = clock
        self.node_id = f"node-{os.getpid()}-{pysecrets.token_hex(3)}"
        clock_ = SystemClock()
        repos = self.repos = SingleObjectRepos(store)
        self.auth = Auth(repos.tenants, clock_)
        self.tenants = Tenants(repos.tenants, self.auth, self._box, clock_, settings)
        inline = InlineActions(repos.pipelines)
        docs = repos.documents
        self.files = FileService(self._blobs, docs, repos.runs, self.auth, self.tenants, clock_, settings)
        self.caches = CacheTags(docs, self._box, self.auth, self.tenants, clock_)
        self.sessions = SessionTypes(docs, self._box, self.auth, self.tenants)
        self.sender = HttpCallbackSender(allowed_networks(settings.http_allow))
        self.callbacks = Callbacks(docs, self._box, self.auth, self.tenants, self.sender)
        self.actions = ActionService(repos.actions, self.auth, self.tenants, self.executors, {PREFIX: inline})
        self.on_enqueue: Callable[[], None] = lambda: None
        #: where a run recorded for the gateway's own executors goes when no worker pool serves this
        #: gateway (on AWS: the runner function, :mod:`hatchway.runner`)
        self.dispatch: Callable[[Run], None] | None = None
        #: (size, busy) of the worker pool serving this gateway, when one runs in this process
        self.capacity: Callable[[], tuple[int, int]] | None = None
        self.metrics = make_recorder(settings)
        store.observe(self.metrics.observe)
        instrument_store(store)
        self.crash_points = CrashPoints(settings.crash_at)  # a test hook; unarmed unless configured
        self.idempotency = Idempotency(repos.idempotency, clock_, settings, self.crash_points)
        self.stats_service = StatsService(
            repos.runs,
            self.metrics,
            self.auth,
            self.tenants,
            lambda: self.capacity() if self.capacity else None,
            clock_,
        )
        self.attempts = AttemptService(
            repos.runs, self.actions, self.executors, self._box, self.redaction, self.files, self.callbacks,
            _GatewayDispatcher(self), TracingTelemetry(), clock_, self.crash_points, settings,
            f"{os.getpid()}-{start_time(os.getpid())}",
        )  # fmt: skip
        intake = RunIntake(self._box, self.files, self.caches, self.sessions, settings)
        self.runs = RunService(
            repos.runs, self.actions, self.attempts, self.idempotency, self.executors, intake, self.callbacks,
            _GatewayDispatcher(self), self.auth, TracingTelemetry(), clock_, settings, self.node_id,
        )  # fmt: skip
        self.connect = ConnectRuns(self.runs, self.actions, repos.actions, self.idempotency, self.auth, settings)

    # ---- set-up ----------------------------------------------------------------------------

    @property
    def secret_box(self) -> ports.SecretBox:
        return self._box

    def bootstrap(self) -> str:
        """Create the default project and settle the bootstrap admin token; returns the token."""
        if self.settings.backend == "embedded" and not self.settings.key_path.exists():
            # the master key exists from the first start (so it can be backed up with the home),
            # not from the first secret; a damaged one is answered 503 where it is used
            from hatchway.secrets.box import load_or_create_key

            load_or_create_key(self.settings.key_path)
        token = self.settings.bootstrap_token
        if token is None:
            token = read_or_create_token_file(self.settings.token_path)
        self.auth.bootstrap(token)
        return token

    def set_bootstrap_token(self, token: str) -> None:
        self.auth.set_bootstrap_token(token)

    # ---- authentication and authorisation --------------------------------------------------

    def authenticate(self, authorization: str | None) -> Principal:
        return self.auth.authenticate(authorization)

    def exchange_client_credentials(self, client_id: str, client_secret: str) -> str:
        return self.auth.exchange_client_credentials(client_id, client_secret)

    def authorize(self, principal: Principal, project_id: str, environment: str | None, scope: str | None) -> None:
        self.auth.authorize(principal, project_id, environment, scope)

    def authorize_project(self, principal: Principal, project_id: str) -> None:
        self.auth.authorize_project(principal, project_id)

    # ---- projects and tokens ---------------------------------------------------------------

    def create_project(self, principal: Principal, name: str, project_id: str | None = None) -> Project:
        return self.tenants.create_project(principal, name, project_id)

    def get_project(self, principal: Principal, project_id: str) -> Project:
        return self.tenants.get_project(principal, project_id)

    def create_token(
        self,
        principal: Principal,
        project_id: str,
        scopes: list[str],
        environments: list[str] | None = None,
        expires_at: int | None = None,
        name: str | None = None,
    ) -> tuple[TokenRecord, str]:
        made = self.tenants.create_token(principal, project_id, scopes, environments, expires_at, name)
        return made.record, made.token

    def list_tokens(self, principal: Principal, project_id: str) -> list[TokenRecord]:
        return self.tenants.list_tokens(principal, project_id)

    def revoke_token(self, principal: Principal, project_id: str, token_id: str) -> None:
        self.tenants.revoke_token(principal, project_id, token_id)

    # ---- secrets ---------------------------------------------------------------------------

    def encrypt(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        value: str,
        action: str | None = None,
        where: list[str | int] | None = None,
    ) -> str:
        return self.tenants.encrypt(principal, project_id, environment, value, action, where)

    # ---- actions ---------------------------------------------------------------------------

    def register_action(
        self, principal: Principal, project_id: str, environment: str, document: Any
    ) -> tuple[ActionRecord, bool]:
        registered = self.actions.register(principal, project_id, environment, document)
        return registered.record, registered.created

    def resolve(
        self,
        project_id: str,
        environment: str,
        name: str,
        version: int | None = None,
        digest: str | None = None,
        include_deleted: bool = False,
    ) -> Resolved:
        return self.actions.resolve(project_id, environment, name, version, digest, include_deleted)

    def get_action(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        name: str,
        version: int | None = None,
        digest: str | None = None,
    ) -> ActionRecord:
        return self.actions.get(principal, project_id, environment, name, version, digest)

    def list_actions(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        limit: int,
        cursor: str | None,
        tag: str | None = None,
    ) -> Page[ActionRecord]:
        return self.actions.list(principal, project_id, environment, limit, cursor, tag)

    def list_versions(
        self, principal: Principal, project_id: str, environment: str, name: str, limit: int, cursor: str | None
    ) -> Page[ActionRecord]:
        return self.actions.versions(principal, project_id, environment, name, limit, cursor)

    def delete_action(self, principal: Principal, project_id: str, environment: str, name: str) -> None:
        self.actions.delete(principal, project_id, environment, name)

    # ---- runs ------------------------------------------------------------------------------

    def submit_run(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        name: str,
        request: RunRequest,
        idempotency_key: str | None = None,
    ) -> tuple[dict[str, Any], int]:
        run = self.runs.submit(principal, project_id, environment, name, request, idempotency_key)
        return run.to_api(), 202

    def once(
        self,
        scope: str,
        fingerprint: str,
        ttl_seconds: int,
        work: Callable[[str], tuple[dict[str, Any], int]],
        keep_errors: bool,
        replay_success: bool = True,
    ) -> tuple[dict[str, Any], int]:
        def answer(run_id: str) -> dict[str, Any]:
            return work(run_id)[0]

        body = self.idempotency.once(
            scope, fingerprint, ttl_seconds, answer, encode=same, decode=same,
            keep_errors=keep_errors, replay_success=replay_success, code=202,
        )  # fmt: skip
        return body, 202

    def _create_async_run(
        self,
        project_id: str,
        environment: str,
        name: str,
        request: RunRequest,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        submit: bool = True,
    ) -> Run:
        return self.runs.enqueue(project_id, environment, name, request, run_id, idempotency_key, submit)

    def call_sync(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        name: str,
        sync_action: str,
        request: RunRequest,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        from hatchway.api.present import sync_body  # (facade: api imports this module)

        return sync_body(self.runs.call_sync(principal, project_id, environment, name, sync_action, request, run_id))

    def run_now(
        self,
        project_id: str,
        environment: str,
        resolved: Resolved,
        invoked: str,
        request: RunRequest,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        from hatchway.api.present import sync_body  # (facade: api imports this module)

        return sync_body(self.runs.run_sync(project_id, environment, resolved, invoked, request, run_id))

    def connect_run(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        action: str,
        version: str | None,
        request: RunRequest,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        return self.connect.run(principal, project_id, environment, action, version, request, idempotency_key)

    def execute_claimed(self, run: Run) -> Run:
        return self.attempts.execute_claimed(run)

    def tidy_at_rest(self) -> None:
        """At start: remove what crashed processes left staged in the clear, and encrypt blobs kept
        in the clear before blobs were encrypted (see the README's "Secrets at rest")."""
        with contextlib.suppress(FileNotFoundError):
            for leftover in self.attempts.staging.iterdir():
                if not owner_alive("-".join(leftover.name.split("-")[:2])):
                    shutil.rmtree(leftover, ignore_errors=True)
        if isinstance(self._blobs, LocalBlobStore):
            encrypted = self._blobs.encrypt_legacy()
            if encrypted:
                log.warning("encrypted files kept in the clear by an earlier version", extra={"count": encrypted})

    # ---- runs: read and cancel -------------------------------------------------------------

    def get_run(self, principal: Principal, project_id: str, environment: str, run_id: str) -> Run:
        return self.runs.get(principal, project_id, environment, run_id)

    def list_runs(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        limit: int,
        cursor: str | None,
        filters: dict[str, str],
    ) -> Page[Run]:
        return self.runs.list(principal, project_id, environment, limit, cursor, filters)

    def read_logs(
        self, principal: Principal, project_id: str, environment: str, run_id: str, after: int, limit: int
    ) -> Page[LogEntry]:
        return self.runs.logs(principal, project_id, environment, run_id, after, limit)

    def cancel_run(self, principal: Principal, project_id: str, environment: str, run_id: str) -> Run:
        return self.runs.cancel(principal, project_id, environment, run_id)

    def cancel_local(self, run_id: str) -> None:
        self.attempts.cancel_local(run_id)

    def is_active(self, run_id: str) -> bool:
        return self.attempts.is_active(run_id)

    # ---- observability ---------------------------------------------------------------------

    def stats(self, principal: Principal, project_id: str, environment: str, window: str) -> Dashboard:
        return self.stats_service.dashboard(principal, project_id, environment, window)

    def metrics_text(self, principal: Principal) -> str:
        return self.stats_service.metrics_text(principal)

    # ---- presentation ----------------------------------------------------------------------

    def present_run(self, run: Run, with_log: bool = True) -> dict[str, Any]:
        """The API's run body: secret values (``#`` keys at any depth) never shown; a list page's
        runs come ``with_log=False``, without the head and tail of their logs (``os``)."""
        return run.to_api(with_log)

    # ---- files and artifacts ---------------------------------------------------------------

    @property
    def blobs(self) -> ports.BlobStore:
        return self.files.blobs

    @blobs.setter
    def blobs(self, blobs: ports.BlobStore) -> None:  # tests put files on S3 (facade only)
        self.files.blobs = self.files.stashes.blobs = blobs

    @property
    def stashes(self) -> FileStashes:
        return self.files.stashes

    def put_file(
        self, principal: Principal, project_id: str, environment: str, path: str, data: bytes
    ) -> dict[str, Any]:
        return _file_info(self.files.put(principal, project_id, environment, path, data))

    def list_files(self, principal: Principal, project_id: str, environment: str) -> list[dict[str, Any]]:
        return [_file_info(stored) for stored in self.files.list(principal, project_id, environment)]

    def get_file(self, principal: Principal, project_id: str, environment: str, path: str) -> bytes:
        return self.files.get(principal, project_id, environment, path)

    def delete_file(self, principal: Principal, project_id: str, environment: str, path: str) -> None:
        self.files.delete(principal, project_id, environment, path)

    def list_artifacts(
        self, principal: Principal, project_id: str, environment: str, run_id: str
    ) -> list[dict[str, Any]]:
        return [_file_info(stored) for stored in self.files.artifacts(principal, project_id, environment, run_id)]

    def get_artifact(self, principal: Principal, project_id: str, environment: str, run_id: str, path: str) -> bytes:
        return self.files.artifact(principal, project_id, environment, run_id, path)

    # ---- cache tags, session types, callback secrets ----------------------------------------

    def set_cache_tag(
        self, principal: Principal, project_id: str, environment: str, tag: str, ttl_seconds: int
    ) -> dict[str, Any]:
        return self.caches.set(principal, project_id, environment, tag, ttl_seconds).to_api()

    def get_cache_tag(self, principal: Principal, project_id: str, environment: str, tag: str) -> dict[str, Any]:
        return self.caches.get(principal, project_id, environment, tag).to_api()

    def delete_cache_tag(self, principal: Principal, project_id: str, environment: str, tag: str) -> None:
        self.caches.delete(principal, project_id, environment, tag)

    def put_session_type(
        self, principal: Principal, project_id: str, environment: str, tag: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        return self.sessions.put(principal, project_id, environment, tag, body).to_api()

    def get_session_type(self, principal: Principal, project_id: str, environment: str, tag: str) -> dict[str, Any]:
        return self.sessions.get(principal, project_id, environment, tag).to_api()

    def delete_session_type(self, principal: Principal, project_id: str, environment: str, tag: str) -> None:
        self.sessions.delete(principal, project_id, environment, tag)

    def callback_secret(self, principal: Principal, project_id: str, rotate: bool) -> str:
        return self.callbacks.secret(principal, project_id, rotate)

    def after_terminal(self, run: Run) -> None:
        self.callbacks.after_terminal(run)

    def _require_project(self, project_id: str) -> None:
        self.tenants.require_project(project_id)


def _file_info(stored: StoredFile) -> dict[str, Any]:
    info = stored.info
    return {"path": stored.path, "size": info.size, "sha256": info.sha256, "modified_at": iso(info.modified_at)}


class _GatewayDispatcher:
    """The facade's run dispatcher: the worker pool's wake-up and the runner function (until callers switch)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def created(self, run: Run) -> None:
        self.gateway.on_enqueue()
        if self.gateway.dispatch is not None:
            self.gateway.dispatch(run)

    def requeued(self, run: Run) -> None:
        self.gateway.on_enqueue()
