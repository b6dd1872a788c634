"""What operators read: the dashboard's numbers and the ``GET /metrics`` page."""

from __future__ import annotations

from collections.abc import Callable

from hatchway.domain.stats import WINDOWS, Dashboard, dashboard
from hatchway.domain.tenants import Principal
from hatchway.errors import ValidationFailed
from hatchway.ports import Clock, Metrics, RunRepo
from hatchway.services.auth import Auth, Tenants


class StatsService:
    """Dashboards per project and environment, and the metrics exposition.

    ``capacity`` answers (size, busy) of the worker pool serving this process, or None when none
    does; the pool is shared by every tenant, so only the global admin sees it.
    """

    def __init__(
        self,
        runs: RunRepo,
        metrics: Metrics,
        auth: Auth,
        tenants: Tenants,
        capacity: Callable[[], tuple[int, int] | None],
        clock: Clock,
    ) -> None:
        self.runs = runs
        self.metrics = metrics
        self.auth = auth
        self.tenants = tenants
        self.capacity = capacity
        self.clock = clock

    def dashboard(self, principal: Principal, project_id: str, environment: str, window: str) -> Dashboard:
        """The dashboard's numbers for one project and environment over the last hour or day."""
        self.auth.authorize(principal, project_id, environment, "runs:read")
        self.tenants.require_project(project_id)
        if window not in WINDOWS:
            raise ValidationFailed.at(["query", "window"], f"window is one of {', '.join(WINDOWS)}")
        span, now = WINDOWS[window], self.clock.now_ms()
        summaries, truncated = self.runs.run_summaries(project_id, environment, now - (span.seconds + 60) * 1000)
        workers = self.capacity() if principal.is_global_admin else None
        return dashboard(
            summaries, self.runs.active_counts(project_id), span, now,
            environment=environment, workers=workers, truncated=truncated,
        )  # fmt: skip

    def metrics_text(self, principal: Principal) -> str:
        """``GET /metrics``: everything for the global admin, one project's series for its admin token."""
        project_id = principal.project_id
        if project_id is not None:  # a project's series of every environment: a project-wide admin's
            self.auth.authorize(principal, project_id, None, "admin")
        workers = self.capacity() if project_id is None else None
        return self.metrics.exposition(self.runs.active_counts(project_id), workers, project_id)
