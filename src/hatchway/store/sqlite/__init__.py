"""The embedded default's repositories: one SQLite file in WAL mode (see ``_db.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hatchway.store.sqlite._db import Database
from hatchway.store.sqlite.actions import SqliteActionRepo
from hatchway.store.sqlite.documents import SqliteDocumentRepo
from hatchway.store.sqlite.idempotency import SqliteIdempotencyRepo
from hatchway.store.sqlite.pipelines import SqlitePipelineRepo
from hatchway.store.sqlite.runs import SqliteRunRepo
from hatchway.store.sqlite.tenants import SqliteTenantRepo

if TYPE_CHECKING:
    from hatchway.config import Settings


class SqliteStore:
    """The six repositories over one SQLite file."""

    def __init__(self, path: Path | str, synchronous: str = "NORMAL", busy_timeout_ms: int = 10_000) -> None:
        self.db = Database(path, synchronous, busy_timeout_ms)
        self.tenants = SqliteTenantRepo(self.db)
        self.actions = SqliteActionRepo(self.db)
        self.runs = SqliteRunRepo(self.db)
        self.idempotency = SqliteIdempotencyRepo(self.db)
        self.documents = SqliteDocumentRepo(self.db)
        self.pipelines = SqlitePipelineRepo(self.db)

    @classmethod
    def from_settings(cls, settings: Settings, **clients: Any) -> SqliteStore:
        """The file the settings name (``clients`` are the AWS backend's: SQLite takes none)."""
        return cls(
            settings.db_path,
            synchronous=settings.store.db_synchronous,
            busy_timeout_ms=int(settings.store.db_busy_timeout_seconds * 1000),
        )

    def ping(self) -> None:
        self.db.ping()

    def close(self) -> None:
        self.db.close()


if TYPE_CHECKING:  # mypy checks that these answer their ports
    from hatchway import ports

    def _implements(store: SqliteStore) -> ports.Repos:
        return store
