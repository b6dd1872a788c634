"""Dialects of other platforms over hatchway's use cases: their request and answer shapes and their
rules (Pipedream Connect's replays), kept out of the services.

* :mod:`~hatchway.compat.connect`: Pipedream Connect's ``actions/run`` (answer shape, replay policy).
* :mod:`~hatchway.compat.keboola`: Keboola's sync action call (``configData`` in, the action's JSON out).
* :mod:`~hatchway.compat.ductape`: the run body's Ductape fields (request records, session, cache,
  callback) and Ductape's ``actions.run`` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hatchway.compat.connect import ConnectRuns
from hatchway.compat.ductape import DuctapeRuns

if TYPE_CHECKING:
    from hatchway.services import Services


@dataclass(frozen=True)
class Compat:
    """The dialects that keep state or policy, built once over the process's use cases."""

    connect: ConnectRuns
    ductape: DuctapeRuns

    @classmethod
    def of(cls, services: Services) -> Compat:
        connect = ConnectRuns(
            services.runs, services.actions, services.repos.actions, services.idempotency, services.auth,
            services.settings.idempotency,
        )  # fmt: skip
        return cls(connect, DuctapeRuns(services.runs, services.actions, services.auth, services.repos.tenants))
