"""State of the gateway: projects, tokens, actions, runs, logs, the queue. See ``runs.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hatchway.config import Settings
    from hatchway.store.runs import BaseStore


def make_store(settings: Settings, **clients: Any) -> BaseStore:
    """The store the settings name: SQLite on the embedded default, DynamoDB on AWS."""
    if settings.backend == "aws":
        try:
            from hatchway.store.dynamodb import DynamoDbStore
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise RuntimeError("the aws backend needs boto3: pip install 'hatchway[aws]'") from exc
        store: BaseStore = DynamoDbStore.from_settings(settings, **clients)
        return store
    from hatchway.store.sqlite import SqliteStore

    return SqliteStore(
        settings.db_path,
        synchronous=settings.db_synchronous,
        busy_timeout_ms=int(settings.db_busy_timeout_seconds * 1000),
    )
