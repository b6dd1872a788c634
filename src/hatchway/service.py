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
import threading
import time
from collections.abc import Callable
from typing import Any

from hatchway import ports
from hatchway.blobs import LocalBlobStore
from hatchway.config import Settings
from hatchway.domain import parameters as params
from hatchway.domain.actions import ActionRecord, Resolved
from hatchway.domain.clock import SystemClock
from hatchway.domain.files import clean_path
from hatchway.domain.parameters import fill_session, has_session_placeholders, is_ciphertext
from hatchway.domain.pipelines.inline import PREFIX
from hatchway.domain.records import MAX_PAGE, Page
from hatchway.domain.runs import (
    LogEntry,
    Mode,
    Run,
    RunError,
    RunRequest,
    RunStatus,
    iso,
    new_run_id,
    now_ms,
)
from hatchway.domain.spec import (
    RUN_ACTION,
)
from hatchway.domain.stats import Dashboard
from hatchway.domain.tenants import Principal, Project, TokenRecord
from hatchway.errors import (
    ActionAppError,
    ActionTimeout,
    ActionUserError,
    BadRequest,
    Conflict,
    NotFound,
    Overloaded,
    TransitionConflict,
    Unavailable,
    ValidationFailed,
    new_exception_id,
)
from hatchway.executors.base import BaseExecutor
from hatchway.executors.journal import owner_alive, start_time
from hatchway.faults import CrashPoints
from hatchway.net import HttpCallbackSender, allowed_networks
from hatchway.observability import TracingTelemetry
from hatchway.observability.metrics import make_recorder
from hatchway.observability.tracing import current_traceparent, instrument_store
from hatchway.ports import BlobStore
from hatchway.secrets import LazySecretBox
from hatchway.secrets.box import SecretBox, local_blob_cipher, read_or_create_token_file
from hatchway.secrets.redact import ActiveRedaction
from hatchway.services.actions import ActionService
from hatchway.services.attempts import AttemptService, log_app_error
from hatchway.services.auth import Auth, Tenants
from hatchway.services.extras import CacheTags, Callbacks, SessionTypes, check_tag, check_url
from hatchway.services.files import FileService, FileStashes, StoredFile
from hatchway.services.idempotency import Idempotency, same
from hatchway.services.pipelines.steps import InlineActions
from hatchway.services.placement import Placement
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
        self._sync_slots = threading.BoundedSemaphore(settings.sync_concurrency)
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

    # ---- parameters ------------------------------------------------------------------------

    def _prepare(
        self, project_id: str, environment: str, resolved: Resolved, request: RunRequest, invoked: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Parameters (secrets encrypted) and the run's options, from a request.

        Session claims are filled in first (a bad token is 401 before anything is stored), then
        parameters are checked against the action, then every ``#`` value - parameters and
        ``input`` alike, at any depth - is encrypted on receipt.
        """
        given: dict[str, Any] = request.parameters
        payload = request.input
        if request.session is not None:
            claims = self.sessions.verify(project_id, environment, request.session)
            given = fill_session(given, claims)
            payload = fill_session(payload, claims) if payload is not None else None
        elif has_session_placeholders(given) or has_session_placeholders(payload):
            raise BadRequest("$Session placeholders need a session: {tag, token}")
        params.check_limits(given, payload, self.settings.limits)
        parameters = params.prepare(resolved.spec, given, partial=invoked != RUN_ACTION)

        def seal(value: str) -> str:
            return (
                value
                if is_ciphertext(value)
                else self.secret_box.encrypt(value, project_id, environment, resolved.record.name)
            )

        options: dict[str, Any] = {}
        if payload is not None:
            options["input"] = params.map_secrets(payload, seal)
        if request.inputs:
            if invoked != RUN_ACTION:
                raise ValidationFailed.at(["body", "inputs"], "sync actions get no input files")
            for path in request.inputs:
                clean_path(path, "inputs", self.settings.limits.max_path_component_bytes)
                if not self.files.has_input(project_id, environment, path):
                    raise NotFound(f"no file {path!r} in this project (upload it with PUT .../files/{path})")
            options["inputs"] = list(request.inputs)
        if request.stash_id is not None:
            options["stash_id"] = self.files.stashes.open(project_id, environment, request.stash_id)
        if request.callback_url is not None:
            options["callback_url"] = check_url(request.callback_url)
        if request.config:
            options["config"] = request.config
        options.update(request.options)
        return params.map_secrets(parameters, seal), options

    def _cache_key(self, run_parameters: dict[str, Any], options: dict[str, Any], resolved: Resolved,
                   invoked: str, tag: str, project_id: str, environment: str) -> str:  # fmt: skip
        """The cache key of a sync call: secret values enter only as HMACs under the gateway's pepper."""

        def mask(value: str) -> str:
            plain = self.secret_box.decrypt(value, project_id, environment, resolved.record.name)
            return self.caches.mask(plain)

        parts = [
            project_id,
            environment,
            resolved.record.digest,
            invoked,
            params.map_secrets(run_parameters, mask),
            params.map_secrets(options.get("input"), mask),
            options.get("config"),
        ]
        return self.caches.key(tag, parts)

    # ---- runs: submit ----------------------------------------------------------------------

    def submit_run(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        name: str,
        request: RunRequest,
        idempotency_key: str | None = None,
    ) -> tuple[dict[str, Any], int]:
        """Accept an async run: (answer, HTTP-neutral status code 202), replayed for a reused key."""
        self.authorize(principal, project_id, environment, "runs:write")
        if idempotency_key is None:
            return self.present_run(self._create_async_run(project_id, environment, name, request)), 202
        scope = f"{project_id}/{environment}/runs/{name}/{idempotency_key}"
        return self.once(
            scope,
            request.fingerprint(f"runs/{name}"),
            self.settings.idempotency_seconds,
            keep_errors=False,
            work=lambda run_id: (
                self.present_run(
                    self.store.get_run(run_id)
                    or self._create_async_run(
                        project_id, environment, name, request, run_id=run_id, idempotency_key=idempotency_key
                    )
                ),
                202,
            ),
        )

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
        """Record an async run (ENQUEUED) and, on a remote executor, submit it - unless ``submit`` is
        False: a pipeline's state machine submits its steps' runs itself."""
        resolved = self.resolve(project_id, environment, name, request.version, request.digest)
        spec = resolved.spec
        self.executors.pick(spec, Mode.ASYNC).check(spec, RUN_ACTION)
        parameters, options = self._prepare(project_id, environment, resolved, request, RUN_ACTION)
        timeout = spec.timeout_seconds
        if request.timeout_seconds is not None:
            timeout = min(timeout, request.timeout_seconds)
        retries = request.retries if request.retries is not None else (spec.retry.count if spec.retry else 0)
        now = now_ms()
        run = Run(
            id=run_id or new_run_id(now),
            project_id=project_id,
            environment=environment,
            action_name=resolved.record.name,
            action_version=resolved.record.version,
            action_digest=resolved.record.digest,
            invoked=RUN_ACTION,
            mode=Mode.ASYNC,
            status=RunStatus.ENQUEUED,
            max_attempts=1 + retries,
            parameters=parameters,
            created_at=now,
            available_at=now,
            external_user_id=request.external_user_id,
            idempotency_key=idempotency_key,
            timeout_seconds=timeout,
            retry_interval_seconds=request.retry_interval_seconds
            if request.retry_interval_seconds is not None
            else (spec.retry.interval_seconds if spec.retry else 0.0),
            options=_with_trace(options),
        )
        executor = self.executors.pick(spec, Mode.ASYNC)
        if executor.is_remote and submit:
            run.external_id = executor.submit(run, spec)
        try:
            self.store.create_run(run)
        except BaseException:
            if run.external_id is not None:
                executor.terminate(run, "the gateway could not record the run")
            raise
        self.on_enqueue()
        if self.dispatch is not None and submit and not executor.is_remote:
            self.dispatch(run)
        return run

    # ---- runs: sync ------------------------------------------------------------------------

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
        """Run a declared sync action to its end and answer its JSON, or raise the contract's error.

        ``run_id`` names the run to record (a pipeline step's, chosen before the call).
        """
        self.authorize(principal, project_id, environment, "runs:write")
        resolved = self.resolve(project_id, environment, name, request.version, request.digest)
        if sync_action not in resolved.spec.sync_actions:
            raise NotFound(f"action {name} has no sync action {sync_action}")
        return self.run_now(project_id, environment, resolved, sync_action, request, run_id)

    def run_now(
        self,
        project_id: str,
        environment: str,
        resolved: Resolved,
        invoked: str,
        request: RunRequest,
        run_id: str | None = None,
    ) -> dict[str, Any]:
        """Run ``invoked`` (a sync action, or ``run`` for Connect callers) while the caller waits.

        The answer is ``{run_id, status, ret, exports, os, duration_ms}`` (plus ``stash_id`` and
        ``cached`` when asked for); a failure raises the contract's error. With a cache tag, a
        fresh stored answer is returned without running anything.
        """
        spec = resolved.spec
        executor = self.executors.pick(spec, Mode.SYNC)
        executor.check(spec, invoked)
        if not executor.stages_files and (request.stash_id is not None or request.inputs):
            field = "stash_id" if request.stash_id is not None else "inputs"
            raise ValidationFailed.at(["body", field], f"file stashes and input files are not available for "
                                      f"{executor.name} sync actions yet", "executor_unsupported")  # fmt: skip
        parameters, options = self._prepare(project_id, environment, resolved, request, invoked)
        cache_key = None
        if request.cache is not None:
            check_tag(request.cache, ["body", "cache"])
            cache_key = self._cache_key(parameters, options, resolved, invoked, request.cache, project_id, environment)
            hit = self.caches.lookup(project_id, environment, cache_key)
            if hit is not None:
                return {**hit, "cached": True}
        limit = float(min(self.settings.sync_timeout_seconds, spec.timeout_seconds))
        if request.timeout_seconds is not None:
            limit = min(limit, float(request.timeout_seconds))
        if not self._sync_slots.acquire(timeout=0.5):
            raise Overloaded("too many sync calls are running; try again shortly", retry_after=1)
        try:
            now = now_ms()
            run = Run(
                id=run_id or new_run_id(now),
                project_id=project_id,
                environment=environment,
                action_name=resolved.record.name,
                action_version=resolved.record.version,
                action_digest=resolved.record.digest,
                invoked=invoked,
                mode=Mode.SYNC,
                status=RunStatus.INPROGRESS,
                attempt=1,
                max_attempts=1 + (request.retries or 0),
                parameters=parameters,
                created_at=now,
                started_at=now,
                available_at=now,
                external_user_id=request.external_user_id,
                timeout_seconds=int(limit),
                options=options,
                lease_owner=self.node_id,
                lease_until=now + int((limit + self.settings.kill_grace_seconds + self.settings.lease_seconds) * 1000),
            )
            revision = self.store.start_sync(run)
            end = self.attempts.execute_sync(run, resolved, limit, revision)
            final, verdict, entries = end.run, end.verdict, end.entries
        finally:
            self._sync_slots.release()
        if verdict.is_success:
            answer: dict[str, Any] = {
                "run_id": final.id,
                "status": final.status.value,
                "ret": verdict.ret,
                "exports": verdict.exports,
                "os": [entry.to_api() for entry in entries],
                "duration_ms": final.duration_ms,
            }
            if "stash_id" in options:
                answer["stash_id"] = options["stash_id"]
            if cache_key is not None and request.cache is not None:
                self.caches.keep(project_id, environment, cache_key, answer,
                                 self.caches.ttl(project_id, environment, request.cache))  # fmt: skip
                answer["cached"] = False
            return answer
        error = verdict.error or RunError("application", "the action failed", new_exception_id())
        if error.kind == "user":
            raise ActionUserError(error.message, final.id)
        if error.kind == "timeout":
            raise ActionTimeout(error.message, final.id, error.exception_id)
        if error.kind == "cancelled":
            raise Conflict(f"run {final.id} was cancelled")
        if error.kind == "unavailable":
            raise Unavailable(error.message)
        log_app_error(final, error)
        raise ActionAppError(error.message, final.id, error.exception_id)

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
        """Pipedream Connect's ``actions/run``: the action's ``run`` while the caller waits.

        Connect SDKs retry on 5xx, 408, 409, 429, so a request is identified by its caller and
        content (or its ``Idempotency-Key``): a repeat within ``connect_replay_seconds`` of an
        error answer gets that answer and never runs the action a second time, and a repeat
        arriving while the first is running waits for its answer. A success is never retried by
        an SDK, so a repeat after it is a deliberate new call and runs the action again - unless
        it carries the same ``Idempotency-Key``, which replays every answer.
        """
        self.authorize(principal, project_id, environment, "runs:write")
        resolved = self._connect_version(project_id, environment, action, version)

        def work(_: str) -> tuple[dict[str, Any], int]:
            answer = self.run_now(project_id, environment, resolved, RUN_ACTION, request)
            return {
                "exports": answer["exports"],
                "os": [{k: v for k, v in entry.items() if k != "seq"} for entry in answer["os"]],
                "ret": answer["ret"],
                "stash_id": answer.get("stash_id"),
            }, 200

        if self.settings.connect_replay_seconds <= 0 and idempotency_key is None:
            return work("")[0]
        fingerprint = request.fingerprint(f"connect/{action}/{version}")
        caller = principal.token_id or "admin"
        scope = f"connect/{project_id}/{environment}/{caller}/{idempotency_key or fingerprint}"
        ttl = self.settings.connect_replay_seconds if idempotency_key is None else self.settings.idempotency_seconds
        keyed = idempotency_key is not None
        return self.once(scope, fingerprint, ttl, work, keep_errors=True, replay_success=keyed)[0]

    def _connect_version(self, project_id: str, environment: str, name: str, version: str | None) -> Resolved:
        """A Connect ``version``: latest, a version number, or the ``metadata.version`` of a version."""
        if version in (None, "", "latest"):
            return self.resolve(project_id, environment, name)
        assert version is not None  # noqa: S101 - narrowed above
        if version.isdigit():
            return self.resolve(project_id, environment, name, int(version))
        for record in self.store.list_versions(project_id, environment, name, MAX_PAGE, None).items:
            if str(record.spec.get("metadata", {}).get("version")) == version:
                return self.resolve(project_id, environment, name, record.version)
        raise NotFound(f"action {name} has no version {version}")

    # ---- runs: one attempt (sync calls and claimed async runs) ------------------------------

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
        self.authorize(principal, project_id, environment, "runs:read")
        run = self.store.get_run(run_id, project_id, environment)
        if run is None:
            raise NotFound(f"no run {run_id}")
        return run

    def list_runs(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        limit: int,
        cursor: str | None,
        filters: dict[str, str],
    ) -> Page[Run]:
        self.authorize(principal, project_id, environment, "runs:read")
        if "status" in filters and filters["status"] and filters["status"] not in RunStatus.__members__:
            raise ValidationFailed.at(["query", "status"], f"status is one of {', '.join(RunStatus.__members__)}")
        return self.store.list_runs(project_id, environment, limit, cursor, filters)

    def read_logs(
        self, principal: Principal, project_id: str, environment: str, run_id: str, after: int, limit: int
    ) -> Page[LogEntry]:
        self.get_run(principal, project_id, environment, run_id)
        return self.store.read_logs(run_id, after, limit)

    def cancel_run(self, principal: Principal, project_id: str, environment: str, run_id: str) -> Run:
        self.authorize(principal, project_id, environment, "runs:write")
        for _ in range(10):
            run = self.store.get_run(run_id, project_id, environment)
            if run is None:
                raise NotFound(f"no run {run_id}")
            try:
                if run.status.is_terminal:
                    raise Conflict(f"run {run_id} already finished ({run.status.value})")
                if run.status == RunStatus.TERMINATING:
                    self.attempts.cancel_local(run_id)
                    return run
                if run.status == RunStatus.ENQUEUED:
                    final = self.store.transition(
                        run_id, RunStatus.ENQUEUED, RunStatus.TERMINATED, finished_at=now_ms(),
                        status_reason="cancelled before it started",
                        error=RunError("cancelled", "the run was cancelled"),
                    )  # fmt: skip
                    self.after_terminal(final)
                    self._terminate_remote(final)
                    return final
                updated = self.store.transition(
                    run_id, RunStatus.INPROGRESS, RunStatus.TERMINATING, status_reason="cancel requested"
                )
                self.attempts.cancel_local(run_id)
                self._terminate_remote(updated)
                return updated
            except TransitionConflict:
                continue
        raise Conflict(f"run {run_id} is changing too fast to cancel; try again")

    def _terminate_remote(self, run: Run) -> None:
        """Stop the Batch job or ECS task of a cancelled run; its state-change event settles it."""
        if run.external_id is not None:
            self.executors.run.terminate(run, "cancelled through the hatchway API")

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


def _with_trace(options: dict[str, Any]) -> dict[str, Any]:
    """A run's options plus the submitting request's trace context, for the worker to continue."""
    traceparent = current_traceparent()
    return {**options, "traceparent": traceparent} if traceparent else options


class _GatewayDispatcher:
    """The facade's run dispatcher: the worker pool's wake-up and the runner function (until callers switch)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def created(self, run: Run) -> None:
        self.gateway.on_enqueue()

    def requeued(self, run: Run) -> None:
        self.gateway.on_enqueue()
