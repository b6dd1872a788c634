"""The scheduled sweep of a deployed stack (``SweeperFunction`` in ``template.yaml``, every minute):
what a worker pool's background threads do locally. The rules are
:class:`hatchway.services.sweeps.Sweeper`; this is its Lambda glue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hatchway.services import Services


def lambda_handler(services: Services) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """One pass over expired leases, undispatched runs and stale remote runs; the report as the answer."""

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return services.sweeper.sweep().to_dict()

    return handle
