"""One store object as the six repositories of :class:`hatchway.ports.Repos` (temporary).

Until the store is split into one repository per aggregate (redesign step A), every repository
port is answered by the same :class:`~hatchway.store.base.BaseStore`: its method names are unique
across aggregates, so the one object satisfies all six structurally. Step A deletes this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hatchway.store.base import BaseStore


class SingleObjectRepos:
    """The repositories of one ``BaseStore``: each property is the store itself."""

    def __init__(self, store: BaseStore) -> None:
        self.store = store

    @property
    def runs(self) -> BaseStore:
        return self.store

    @property
    def actions(self) -> BaseStore:
        return self.store

    @property
    def tenants(self) -> BaseStore:
        return self.store

    @property
    def idempotency(self) -> BaseStore:
        return self.store

    @property
    def documents(self) -> BaseStore:
        return self.store

    @property
    def pipelines(self) -> BaseStore:
        return self.store

    def ping(self) -> None:
        self.store.ping()

    def close(self) -> None:
        self.store.close()


if TYPE_CHECKING:  # mypy checks that the adapter answers the port
    from hatchway import ports

    def _implements(repos: SingleObjectRepos) -> ports.Repos:
        return repos
