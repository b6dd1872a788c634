"""File stashes (Pipedream's File Stash): a directory that survives between runs for 24 hours.

A run or sync call that names a stash finds its files in its TMPDIR (``/tmp`` in containers of the
docker and lambda-local executors: a call with a stash runs in a fresh container whose ``/tmp`` is
bind-mounted from the attempt's workspace);
whatever the action leaves there is saved back when it ends. ``"NEW"``, ``""`` or ``true`` create
a stash; an existing id loads it. A stash belongs to one project and environment; an unknown or
expired id is a 404, like any object that is not there.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hatchway.blobs import redacted_text
from hatchway.domain.records import Document
from hatchway.domain.runs import now_ms
from hatchway.errors import NotFound, ValidationFailed
from hatchway.ports import BlobStore
from hatchway.runtime.redact import NO_SECRETS, RedactorLike
from hatchway.store.flat import SingleStore

KIND = "stash"
LIFETIME_MS = 24 * 3600 * 1000


def wants_new(value: Any) -> bool:
    """``"NEW"``, ``""`` and ``true`` ask for a new stash."""
    return value is True or (isinstance(value, str) and value in ("NEW", ""))


class FileStashes:
    """Stash records in the store, stash files in the blob store."""

    def __init__(self, store: SingleStore, blobs: BlobStore) -> None:
        self.store = store
        self.blobs = blobs

    @staticmethod
    def _prefix(project_id: str, environment: str, stash_id: str) -> str:
        return f"stashes/{project_id}/{environment}/{stash_id}"

    def open(self, project_id: str, environment: str, requested: Any) -> str:
        """The stash a request names: a new one, or an existing one of this project (else 404)."""
        if wants_new(requested):
            stash_id = "stash_" + secrets.token_hex(12)
            now = now_ms()
            self.store.put_document(
                Document(project_id, environment, KIND, stash_id, {"created_at": now}, expires_at=now + LIFETIME_MS)
            )
            return stash_id
        if not isinstance(requested, str) or not requested.startswith("stash_") or len(requested) > 64:
            raise ValidationFailed.at(["body", "stash_id"], 'a stash id, or "NEW" / true for a new stash')
        if self.store.get_document(project_id, environment, KIND, requested) is None:
            self.blobs.delete_prefix(self._prefix(project_id, environment, requested))
            raise NotFound(f"no stash {requested} (stashes last 24 hours)")
        return requested

    def directory(self, project_id: str, environment: str, stash_id: str, scratch: Path) -> Path:
        """The stash's files, written out in the clear to the private directory ``scratch``."""
        prefix = self._prefix(project_id, environment, stash_id)
        scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
        for info in self.blobs.list(prefix):
            self.blobs.export(info.key, scratch / info.key[len(prefix) + 1 :])
        return scratch

    def save(
        self,
        project_id: str,
        environment: str,
        stash_id: str,
        files: Iterable[tuple[str, Path]],
        redactor: RedactorLike = NO_SECRETS,
    ) -> int:
        """Replace the stash's files with ``files`` ((relative path, readable path), e.g. from
        :meth:`hatchway.runtime.contract.Workspace.files`), text files with the secrets of
        ``redactor`` hidden (a stash is kept at rest like an artifact); how many were saved."""
        prefix = self._prefix(project_id, environment, stash_id)
        self.blobs.delete_prefix(prefix)
        saved = 0
        for relative, path in files:
            self.blobs.put_chunks(f"{prefix}/{relative}", redacted_text(path, redactor))
            saved += 1
        return saved
