"""State of the gateway as repositories, one per aggregate: tenants, actions, runs (with their
queue, leases and logs), idempotency keys, documents, pipelines.

Each ``store/<aggregate>.py`` holds the rules as a base class; a backend (``sqlite/``, ``dynamodb/``)
implements a handful of primitives per aggregate and builds the six over one database
(``SqliteStore``, ``DynamoDbStore``: each a ``ports.Repos``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hatchway.config import Settings
    from hatchway.store.dynamodb import DynamoDbStore
    from hatchway.store.sqlite import SqliteStore


def build_repos(settings: Settings, **clients: Any) -> SqliteStore | DynamoDbStore:
    """The repositories the settings name: SQLite on the embedded default, DynamoDB on AWS
    (``clients``: an ``aws=AwsClients`` or a boto3 ``session=`` and client overrides)."""
    if settings.backend == "aws":
        try:
            from hatchway.store.dynamodb import DynamoDbStore
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise RuntimeError("the aws backend needs boto3: pip install 'hatchway[aws]'") from exc
        return DynamoDbStore.from_settings(settings, **clients)
    from hatchway.store.sqlite import SqliteStore

    return SqliteStore.from_settings(settings, **clients)
