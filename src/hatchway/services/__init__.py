"""The use cases behind the API, the CLI, the worker pool and the Lambda handlers, on ports only.

:class:`Services` is what :func:`hatchway.wiring.build_services` hands a process: every use case,
built once over one set of adapters. Nothing is set on a service after it is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hatchway.config import Settings
from hatchway.faults import CrashPoints
from hatchway.ports import Repos, Telemetry

if TYPE_CHECKING:
    from hatchway.services.actions import ActionService
    from hatchway.services.attempts import AttemptService
    from hatchway.services.auth import Auth, Tenants
    from hatchway.services.dispatched import DispatchedRuns
    from hatchway.services.extras import CacheTags, Callbacks, SessionTypes
    from hatchway.services.files import FileService
    from hatchway.services.idempotency import Idempotency
    from hatchway.services.pipelines import PipelineServices
    from hatchway.services.placement import Placement
    from hatchway.services.queue import LocalQueue
    from hatchway.services.remote import RemoteRuns
    from hatchway.services.runs import RunService
    from hatchway.services.stats import StatsService
    from hatchway.services.sweeps import Sweeper


@dataclass(frozen=True)
class Services:
    """One process's use cases. ``queue`` is the local queue's doorbell when a worker pool serves
    this process (``hatchway serve``, ``hatchway worker``), else None."""

    settings: Settings
    repos: Repos
    auth: Auth
    tenants: Tenants
    actions: ActionService
    idempotency: Idempotency
    runs: RunService
    attempts: AttemptService
    files: FileService
    caches: CacheTags
    sessions: SessionTypes
    callbacks: Callbacks
    stats: StatsService
    placement: Placement
    queue: LocalQueue | None
    dispatched: DispatchedRuns
    sweeper: Sweeper
    remote: RemoteRuns
    pipelines: PipelineServices
    node_id: str
    crash_points: CrashPoints
    #: spans and log correlation (the API's request scope)
    telemetry: Telemetry

    def close(self) -> None:
        """Stop background work and release what the adapters hold (executors, connections)."""
        self.pipelines.close()
        self.placement.close()
        self.callbacks.sender.close()
        self.repos.close()
