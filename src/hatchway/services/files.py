"""Files: project files (inputs runs name), run artifacts, and file stashes.

* **Project files** (Roboto): ``PUT/GET/DELETE .../files/{path}``; a run names them in ``inputs``
  and finds them in ``in/``.
* **Artifacts**: what a run leaves in ``out/files/`` (and Keboola's ``out/tables/``), kept with the
  run's secrets hidden in text files.
* **File stashes** (Pipedream's File Stash): a directory that survives between runs for 24 hours. A
  run or sync call that names a stash finds its files in its TMPDIR; whatever the action leaves there
  is saved back when it ends. ``"NEW"``, ``""`` or ``true`` create a stash; an existing id loads it.
  A stash belongs to one project and environment; an unknown or expired id is a 404.

Every blob is kept by a :class:`~hatchway.ports.BlobStore` (encrypted files, or S3 under SSE-KMS).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hatchway.config import InputLimits
from hatchway.domain.files import BlobInfo, clean_path, redacted_text
from hatchway.domain.records import Document
from hatchway.domain.tenants import Principal
from hatchway.errors import NotFound, ValidationFailed
from hatchway.ports import BlobStore, Clock, DocumentRepo, RunRepo
from hatchway.runtime.contract import Workspace
from hatchway.runtime.redact import RedactorLike
from hatchway.services.auth import Auth, Tenants

STASH_KIND = "stash"
#: how long a link to a large download stays valid
LINK_SECONDS = 300
STASH_LIFETIME_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Download:
    """A stored file to answer with, found and authorised: its length is known before it is read, so
    a large one can be streamed or linked instead of held whole."""

    key: str
    size: int
    blobs: BlobStore

    def read(self) -> bytes:
        data = self.blobs.read(self.key)
        if data is None:  # removed between the lookup and the read
            raise NotFound("the file is gone")
        return data

    def chunks(self) -> AbstractContextManager[Iterator[bytes] | None]:
        """Its bytes chunk by chunk while the context is open (None: gone since the lookup)."""
        return self.blobs.chunks(self.key)

    def link(self) -> str | None:
        """A URL that reads it for a few minutes, where the store gives one (S3)."""
        return self.blobs.link(self.key, LINK_SECONDS)


@dataclass
class StoredFile:
    """A project file or an artifact: its path (relative to the project or run) and its blob."""

    path: str
    info: BlobInfo


def wants_new(value: Any) -> bool:
    """``"NEW"``, ``""`` and ``true`` ask for a new stash."""
    return value is True or (isinstance(value, str) and value in ("NEW", ""))


class FileStashes:
    """Stash records in the document repository, stash files in the blob store."""

    def __init__(self, documents: DocumentRepo, blobs: BlobStore, clock: Clock) -> None:
        self.documents = documents
        self.blobs = blobs
        self.clock = clock

    @staticmethod
    def _prefix(project_id: str, environment: str, stash_id: str) -> str:
        return f"stashes/{project_id}/{environment}/{stash_id}"

    def open(self, project_id: str, environment: str, requested: Any) -> str:
        """The stash a request names: a new one, or an existing one of this project (else 404)."""
        if wants_new(requested):
            stash_id = "stash_" + secrets.token_hex(12)
            now = self.clock.now_ms()
            expires_at = now + STASH_LIFETIME_MS
            document = Document(
                project_id, environment, STASH_KIND, stash_id, {"created_at": now}, expires_at=expires_at
            )
            self.documents.put_document(document)
            return stash_id
        if not isinstance(requested, str) or not requested.startswith("stash_") or len(requested) > 64:
            raise ValidationFailed.at(["body", "stash_id"], 'a stash id, or "NEW" / true for a new stash')
        if self.documents.get_document(project_id, environment, STASH_KIND, requested) is None:
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
        redactor: RedactorLike,
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


class FileService:
    """Project files and run artifacts; stashes through :attr:`stashes`."""

    def __init__(
        self,
        blobs: BlobStore,
        documents: DocumentRepo,
        runs: RunRepo,
        auth: Auth,
        tenants: Tenants,
        clock: Clock,
        limits: InputLimits,
    ) -> None:
        self.blobs = blobs
        self.runs = runs
        self.auth = auth
        self.tenants = tenants
        self.limits = limits
        self.stashes = FileStashes(documents, blobs, clock)

    def _path(self, path: str) -> str:
        """A path a client names (a file, an artifact), checked (422) before any blob is touched."""
        return clean_path(path, "path", self.limits.max_path_component_bytes)

    def file_key(self, project_id: str, environment: str, path: str) -> str:
        return f"files/{project_id}/{environment}/{self._path(path)}"

    def put(self, principal: Principal, project_id: str, environment: str, path: str, data: bytes) -> StoredFile:
        """Store a project file (an input runs can name)."""
        self.auth.authorize(principal, project_id, environment, "runs:write")
        self.tenants.require_project(project_id)
        return StoredFile(path, self.blobs.put_bytes(self.file_key(project_id, environment, path), data))

    def get(self, principal: Principal, project_id: str, environment: str, path: str) -> Download:
        self.auth.authorize(principal, project_id, environment, "runs:read")
        return self._download(self.file_key(project_id, environment, path), f"no file {path!r}")

    def _download(self, key: str, missing: str) -> Download:
        size = self.blobs.size(key)
        if size is None:
            raise NotFound(missing)
        return Download(key, size, self.blobs)

    def delete(self, principal: Principal, project_id: str, environment: str, path: str) -> None:
        self.auth.authorize(principal, project_id, environment, "runs:write")
        if not self.blobs.delete_prefix(self.file_key(project_id, environment, path)):
            raise NotFound(f"no file {path!r}")

    def has_input(self, project_id: str, environment: str, path: str) -> bool:
        return self.blobs.exists(self.file_key(project_id, environment, path))

    def export_input(self, project_id: str, environment: str, path: str, target: Path) -> bool:
        """A project file written out in the clear to ``target`` (a private file of an attempt)."""
        return self.blobs.export(self.file_key(project_id, environment, path), target)

    def _readable_run(self, principal: Principal, project_id: str, environment: str, run_id: str) -> None:
        self.auth.authorize(principal, project_id, environment, "runs:read")
        if self.runs.get_run(run_id, project_id, environment) is None:
            raise NotFound(f"no run {run_id}")

    @staticmethod
    def artifacts_prefix(project_id: str, run_id: str) -> str:
        """Where a run's artifacts are: under its project, which a run container's task role
        reaches alone (``artifacts/<run>`` before keys carried the project: still read)."""
        return f"artifacts/{project_id}/{run_id}"

    def artifacts(self, principal: Principal, project_id: str, environment: str, run_id: str) -> list[StoredFile]:
        self._readable_run(principal, project_id, environment, run_id)
        for prefix in (self.artifacts_prefix(project_id, run_id), f"artifacts/{run_id}"):
            found = [StoredFile(info.key[len(prefix) + 1 :], info) for info in self.blobs.list(prefix)]
            if found:
                return found
        return []

    def artifact(self, principal: Principal, project_id: str, environment: str, run_id: str, path: str) -> Download:
        self._readable_run(principal, project_id, environment, run_id)
        relative = self._path(path)
        key = f"{self.artifacts_prefix(project_id, run_id)}/{relative}"
        if self.blobs.size(key) is None:
            key = f"artifacts/{run_id}/{relative}"  # kept before keys carried the project
        return self._download(key, f"run {run_id} has no artifact {path!r}")

    def keep_artifacts(self, project_id: str, run_id: str, workspace: Workspace, redactor: RedactorLike) -> None:
        """Files the action left in ``out/files/`` (and Keboola's ``out/tables/``) become artifacts,
        text files with the run's secrets hidden (regular files only, never through a link the
        action made: see :meth:`Workspace.files`)."""
        prefix = self.artifacts_prefix(project_id, run_id)
        for folder in ("files", "tables"):
            for relative, path in workspace.files("out", folder):
                self.blobs.put_chunks(f"{prefix}/{folder}/{relative}", redacted_text(path, redactor))

    def list(self, principal: Principal, project_id: str, environment: str) -> list[StoredFile]:
        """The project's files (last in the class: its name would shadow ``list`` below it)."""
        self.auth.authorize(principal, project_id, environment, "runs:read")
        prefix = f"files/{project_id}/{environment}"
        return [StoredFile(info.key[len(prefix) + 1 :], info) for info in self.blobs.list(prefix)]
