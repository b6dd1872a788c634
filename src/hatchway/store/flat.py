"""Every repository as one object, for the callers written against the single store of old.

Until the use cases take their repositories one by one (issue 16, step B1), ``service.py`` and its
helpers call ``store.create_run(...)``, ``store.get_action(...)`` on one object. Repository method
names are unique across aggregates, so :class:`FlatMethods` answers each name from the repository
that has it; :class:`SingleStore` is that surface's type. Both go once nothing calls them.
"""

from __future__ import annotations

from typing import Any, Protocol

from hatchway.ports import ActionRepo, DocumentRepo, IdempotencyRepo, PipelineRepo, Repos, RunRepo, TenantRepo

AGGREGATES = ("tenants", "actions", "runs", "idempotency", "documents", "pipelines")


class SingleStore(Repos, TenantRepo, ActionRepo, RunRepo, IdempotencyRepo, DocumentRepo, PipelineRepo, Protocol):
    """The repositories, and their methods on the one object too (today's ``gateway.store``)."""


class FlatMethods:
    """Mixin for a backend's repositories: ``store.<method>`` is ``store.<aggregate>.<method>``."""

    def __getattr__(self, name: str) -> Any:
        # called only for names the object itself lacks; private names never cross over
        if not name.startswith("_"):
            for aggregate in AGGREGATES:
                repo = self.__dict__.get(aggregate)
                if repo is not None and hasattr(type(repo), name):
                    return getattr(repo, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
