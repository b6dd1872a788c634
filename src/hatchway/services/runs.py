"""Runs: accept async runs, answer sync calls, read, list and cancel.

An async run is recorded ENQUEUED and handed on: to its engine (Batch, ECS) when one runs it,
else to the :class:`~hatchway.ports.RunDispatcher` (the local pool's doorbell, the runner
function). A sync call runs its one attempt while the caller waits (:class:`AttemptService`),
unless a cache tag has a fresh answer. Both check and seal the request first
(:class:`RunIntake`): session claims, parameters against the action, every secret encrypted.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from hatchway.config import InputLimits, Settings
from hatchway.domain import parameters as params
from hatchway.domain.actions import Resolved
from hatchway.domain.files import clean_path
from hatchway.domain.parameters import fill_session, has_session_placeholders, is_ciphertext
from hatchway.domain.records import Page
from hatchway.domain.runs import (
    LogEntry,
    Mode,
    Run,
    RunError,
    RunRequest,
    RunStatus,
    SyncOutcome,
    new_run_id,
    owner_engine,
    run_from_dict,
    run_to_dict,
)
from hatchway.domain.spec import RUN_ACTION
from hatchway.domain.tenants import Principal
from hatchway.errors import (
    ActionAppError,
    ActionTimeout,
    ActionUserError,
    BadRequest,
    Conflict,
    NotFound,
    Overloaded,
    TransitionConflict,
    ValidationFailed,
    new_exception_id,
)
from hatchway.ports import Clock, RunDispatcher, RunRepo, SecretBox, Telemetry
from hatchway.services.actions import ActionService
from hatchway.services.attempts import AttemptService, platform_answer
from hatchway.services.auth import Auth
from hatchway.services.extras import CacheTags, Callbacks, SessionTypes, check_tag, check_url
from hatchway.services.files import FileService
from hatchway.services.idempotency import Idempotency
from hatchway.services.placement import Placement
from hatchway.services.slots import SharedSlots


class RunIntake:
    """A request's parameters and options as a run keeps them: checked, with every secret sealed."""

    def __init__(
        self, box: SecretBox, files: FileService, caches: CacheTags, sessions: SessionTypes, limits: InputLimits
    ) -> None:
        self.box = box
        self.files = files
        self.caches = caches
        self.sessions = sessions
        self.limits = limits

    def prepare(
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
        limits = self.limits
        params.check_limits(given, payload, limits)
        parameters = params.prepare(resolved.spec, given, partial=invoked != RUN_ACTION)

        def seal(value: str) -> str:
            return (
                value
                if is_ciphertext(value)
                else self.box.encrypt(value, project_id, environment, resolved.record.name)
            )

        options: dict[str, Any] = {}
        if payload is not None:
            options["input"] = params.map_secrets(payload, seal)
        if request.inputs:
            if invoked != RUN_ACTION:
                raise ValidationFailed.at(["body", "inputs"], "sync actions get no input files")
            for path in request.inputs:
                clean_path(path, "inputs", limits.max_path_component_bytes)
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

    def cache_key(
        self, parameters: dict[str, Any], options: dict[str, Any], resolved: Resolved, invoked: str, tag: str,
        project_id: str, environment: str,
    ) -> str:  # fmt: skip
        """The cache key of a sync call: secret values enter only as HMACs under the gateway's pepper."""

        def mask(value: str) -> str:
            return self.caches.mask(self.box.decrypt(value, project_id, environment, resolved.record.name))

        parts = [
            project_id,
            environment,
            resolved.record.digest,
            invoked,
            params.map_secrets(parameters, mask),
            params.map_secrets(options.get("input"), mask),
            options.get("config"),
        ]
        return self.caches.key(tag, parts)


def new_run(
    resolved: Resolved, project_id: str, environment: str, request: RunRequest, run_id: str | None, now: int,
    **fields: Any,
) -> Run:  # fmt: skip
    """A run of ``resolved`` created ``now`` (``fields``: what its mode makes of the request)."""
    record = resolved.record
    return Run(
        id=run_id or new_run_id(now),
        project_id=project_id,
        environment=environment,
        action_name=record.name,
        action_version=record.version,
        action_digest=record.digest,
        created_at=now,
        available_at=now,
        external_user_id=request.external_user_id,
        **fields,
    )


def sync_slots(settings: Settings) -> threading.BoundedSemaphore | SharedSlots:
    """The sync-call limit: this process's own, or, under ``hatchway serve --processes N``, the
    whole gateway's - shared through lock files beside its home (README, Configuration)."""
    limit = settings.sync.sync_concurrency
    if settings.server.processes > 1:
        return SharedSlots(settings.home / "sync-slots", limit)
    return threading.BoundedSemaphore(limit)


def kept_run(run: Run) -> dict[str, Any]:
    """A run as an idempotency record keeps it for replays: everything its API body shows (its
    options - input payload, callback - are left out: they can be large, and no answer shows them)."""
    return {"v": 2, "run": run_to_dict(replace(run, options={}))}


class RunService:
    """The run use cases of a project and environment."""

    def __init__(
        self,
        runs: RunRepo,
        actions: ActionService,
        attempts: AttemptService,
        idempotency: Idempotency,
        placement: Placement,
        intake: RunIntake,
        callbacks: Callbacks,
        dispatcher: RunDispatcher,
        auth: Auth,
        telemetry: Telemetry,
        clock: Clock,
        settings: Settings,
        node_id: str,
    ) -> None:
        self.runs = runs
        self.actions = actions
        self.attempts = attempts
        self.idempotency = idempotency
        self.placement = placement
        self.intake = intake
        self.callbacks = callbacks
        self.dispatcher = dispatcher
        self.auth = auth
        self.telemetry = telemetry
        self.clock = clock
        self.settings = settings
        self.node_id = node_id
        self._sync_slots = sync_slots(settings)

    # ---- async runs ------------------------------------------------------------------------

    def submit(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        name: str,
        request: RunRequest,
        idempotency_key: str | None = None,
        deadline: float | None = None,
    ) -> Run:
        """Accept an async run; a request repeating an Idempotency-Key gets the first one's run
        (waiting for it until ``deadline`` at most, see :meth:`Idempotency.once`)."""
        self.auth.authorize(principal, project_id, environment, "runs:write")
        if idempotency_key is None:
            return self.enqueue(project_id, environment, name, request)

        def work(run_id: str) -> Run:
            return self.runs.get_run(run_id, project_id) or self.enqueue(
                project_id, environment, name, request, run_id=run_id, idempotency_key=idempotency_key
            )

        return self.idempotency.once(
            f"{project_id}/{environment}/runs/{name}/{idempotency_key}",
            request.fingerprint(f"runs/{name}"),
            self.settings.idempotency.idempotency_seconds,
            work,
            encode=kept_run,
            decode=lambda kept: self._replayed(kept, project_id),
            keep_errors=False,
            code=202,
            deadline=deadline,
        )

    def _replayed(self, kept: dict[str, Any], project_id: str) -> Run:
        if kept.get("v") == 2:
            return run_from_dict(kept["run"])
        # kept by a gateway before this one (its API body): the run as it is now
        run = self.runs.get_run(str(kept.get("id")), project_id)
        if run is None:
            raise NotFound(f"no run {kept.get('id')}")
        return run

    def enqueue(
        self,
        project_id: str,
        environment: str,
        name: str,
        request: RunRequest,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        submit: bool = True,
    ) -> Run:
        """Record an async run (ENQUEUED) and hand it on - unless ``submit`` is False: a pipeline's
        state machine submits its steps' runs itself. Principal-free: the caller authorised it."""
        resolved = self.actions.resolve(project_id, environment, name, request.version, request.digest)
        spec = resolved.spec
        self.placement.check(spec, RUN_ACTION, Mode.ASYNC)
        engine = self.placement.engine_for(spec)
        parameters, options = self.intake.prepare(project_id, environment, resolved, request, RUN_ACTION)
        timeout = spec.timeout_seconds
        if request.timeout_seconds is not None:
            timeout = min(timeout, request.timeout_seconds)
        retries = request.retries if request.retries is not None else (spec.retry.count if spec.retry else 0)
        interval = request.retry_interval_seconds
        if interval is None:
            interval = spec.retry.interval_seconds if spec.retry else 0.0
        traceparent = self.telemetry.traceparent()  # for the worker to continue the submitter's trace
        now = self.clock.now_ms()
        run = new_run(
            resolved, project_id, environment, request, run_id, now,
            invoked=RUN_ACTION, mode=Mode.ASYNC, status=RunStatus.ENQUEUED, max_attempts=1 + retries,
            parameters=parameters, idempotency_key=idempotency_key, timeout_seconds=timeout,
            retry_interval_seconds=interval,
            options={**options, "traceparent": traceparent} if traceparent else options,
        )  # fmt: skip
        if engine is not None and submit:
            run.external_id = engine.submit(run, spec)
        try:
            self.runs.create_run(run)
        except BaseException:
            if engine is not None and run.external_id is not None:
                engine.terminate(run, "the gateway could not record the run")
            raise
        if submit and engine is None:
            self.dispatcher.created(run)
        return run

    # ---- sync calls ------------------------------------------------------------------------

    def call_sync(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        name: str,
        sync_action: str,
        request: RunRequest,
        run_id: str | None = None,
    ) -> SyncOutcome:
        """Run a declared sync action to its end, or raise the contract's error.

        ``run_id`` names the run to record (a pipeline step's, chosen before the call).
        """
        self.auth.authorize(principal, project_id, environment, "runs:write")
        resolved = self.actions.resolve(project_id, environment, name, request.version, request.digest)
        if sync_action not in resolved.spec.sync_actions:
            raise NotFound(f"action {name} has no sync action {sync_action}")
        return self.run_sync(project_id, environment, resolved, sync_action, request, run_id)

    def run_sync(
        self,
        project_id: str,
        environment: str,
        resolved: Resolved,
        invoked: str,
        request: RunRequest,
        run_id: str | None = None,
    ) -> SyncOutcome:
        """Run ``invoked`` (a sync action, or ``run`` for Connect callers) while the caller waits.

        Principal-free: the caller authorised it. With a cache tag, a fresh stored answer is
        returned without running anything; a failure raises the contract's error.
        """
        spec = resolved.spec
        self.placement.check(spec, invoked, Mode.SYNC)
        executor = self.placement.executor_for(spec, Mode.SYNC)
        if not executor.stages_files and (request.stash_id is not None or request.inputs):
            field = "stash_id" if request.stash_id is not None else "inputs"
            raise ValidationFailed.at(["body", field], f"file stashes and input files are not available for "
                                      f"{executor.name} sync actions yet", "executor_unsupported")  # fmt: skip
        parameters, options = self.intake.prepare(project_id, environment, resolved, request, invoked)
        caches = self.intake.caches
        cache_key = None
        if request.cache is not None:
            check_tag(request.cache, ["body", "cache"])
            cache_key = self.intake.cache_key(
                parameters, options, resolved, invoked, request.cache, project_id, environment
            )
            hit = caches.lookup(project_id, environment, cache_key)
            if hit is not None:
                return SyncOutcome.from_record(hit, cached=True)
        settings = self.settings
        limit = float(min(settings.sync.sync_timeout_seconds, spec.timeout_seconds))
        if request.timeout_seconds is not None:
            limit = min(limit, float(request.timeout_seconds))
        if not self._sync_slots.acquire(timeout=0.5):
            raise Overloaded("too many sync calls are running; try again shortly", retry_after=1)
        try:
            now = self.clock.now_ms()
            lease = limit + settings.runs.kill_grace_seconds + settings.runs.lease_seconds
            run = new_run(
                resolved, project_id, environment, request, run_id, now,
                invoked=invoked, mode=Mode.SYNC, status=RunStatus.INPROGRESS, attempt=1,
                max_attempts=1 + (request.retries or 0), parameters=parameters, started_at=now,
                timeout_seconds=int(limit), options=options, lease_owner=self.node_id,
                lease_until=now + int(lease * 1000),
            )  # fmt: skip
            revision = self.runs.start_sync(run)
            end = self.attempts.execute_sync(run, resolved, limit, revision)
        finally:
            self._sync_slots.release()
        final, verdict = end.run, end.verdict
        if verdict.is_success:
            outcome = SyncOutcome(
                final.id, final.status.value, verdict.ret, verdict.exports, end.entries, final.duration_ms,
                stash_id=options.get("stash_id"),
            )  # fmt: skip
            if cache_key is not None and request.cache is not None:
                ttl = caches.ttl(project_id, environment, request.cache)
                caches.keep(project_id, environment, cache_key, outcome.to_record(), ttl)
                outcome.cached = False
            return outcome
        error = verdict.error or RunError("application", "the action failed", new_exception_id())
        if error.kind == "user":
            raise ActionUserError(error.message, final.id)
        if error.kind == "timeout":
            raise ActionTimeout(error.message, final.id, error.exception_id)
        if error.kind == "cancelled":
            raise Conflict(f"run {final.id} was cancelled")
        platform = platform_answer(final, error, spec, settings.runs.platform_retry_seconds)
        if platform is not None:
            raise platform
        raise ActionAppError(error.message, final.id, error.exception_id)

    # ---- reading and cancelling ------------------------------------------------------------

    def get(self, principal: Principal, project_id: str, environment: str, run_id: str) -> Run:
        self.auth.authorize(principal, project_id, environment, "runs:read")
        run = self.runs.get_run(run_id, project_id, environment)
        if run is None:
            raise NotFound(f"no run {run_id}")
        return run

    def list(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        limit: int,
        cursor: str | None,
        filters: dict[str, str],
    ) -> Page[Run]:
        self.auth.authorize(principal, project_id, environment, "runs:read")
        if "status" in filters and filters["status"] and filters["status"] not in RunStatus.__members__:
            raise ValidationFailed.at(["query", "status"], f"status is one of {', '.join(RunStatus.__members__)}")
        page = self.runs.list_runs(project_id, environment, limit, cursor, filters)
        if not page.items and cursor is None:
            # nothing listed: a project that does not exist is a 404 (looked up only then: one read less)
            self.actions.tenants.require_project(project_id)
        return page

    def logs(
        self, principal: Principal, project_id: str, environment: str, run_id: str, after: int, limit: int
    ) -> Page[LogEntry]:
        self.get(principal, project_id, environment, run_id)
        return self.runs.read_logs(run_id, after, limit)

    def cancel(self, principal: Principal, project_id: str, environment: str, run_id: str) -> Run:
        """Cancel a run: a queued one ends at once, a running one is asked to stop (TERMINATING)."""
        self.auth.authorize(principal, project_id, environment, "runs:write")
        for _ in range(10):
            run = self.runs.get_run(run_id, project_id, environment)
            if run is None:
                raise NotFound(f"no run {run_id}")
            try:
                if run.status.is_terminal:
                    raise Conflict(f"run {run_id} already finished ({run.status.value})")
                if run.status == RunStatus.TERMINATING:
                    self.attempts.cancel_local(run_id)
                    return run
                if run.status == RunStatus.ENQUEUED:
                    final = self.runs.transition(
                        run_id, RunStatus.ENQUEUED, RunStatus.TERMINATED, finished_at=self.clock.now_ms(),
                        status_reason="cancelled before it started",
                        error=RunError("cancelled", "the run was cancelled"),
                    )  # fmt: skip
                    self.callbacks.after_terminal(final)
                    self._terminate_remote(final)
                    return final
                updated = self.runs.transition(
                    run_id, RunStatus.INPROGRESS, RunStatus.TERMINATING, status_reason="cancel requested"
                )
                self.attempts.cancel_local(run_id)
                self._terminate_remote(updated)
                return updated
            except TransitionConflict:
                continue
        raise Conflict(f"run {run_id} is changing too fast to cancel; try again")

    def _terminate_remote(self, run: Run) -> None:
        """Stop the Batch job or ECS task of a cancelled run (by the engine that holds it, also after a
        switch from one engine to the other); its state-change event settles it."""
        if run.external_id is not None:
            engine = self.placement.engine_named(owner_engine(run.external_id))
            engine.terminate(run, "cancelled through the hatchway API")
