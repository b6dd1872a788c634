"""Cache tags for sync calls (Ductape's ``cache``): a successful answer reused for a while.

A sync call with ``cache: "<tag>"`` first looks for an answer stored under a key derived from the
project, environment, action digest, sync action, parameters and ``input``; a hit answers without
running anything. Secret values never enter a key in any readable form: each is replaced by an
HMAC under a gateway-wide pepper (itself kept encrypted in the store), so equal secrets still make
equal keys while a key reveals nothing of them. A tag's lifetime is set with
``PUT /v1/projects/{p}/caches/{tag}``; unregistered tags keep answers for five minutes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
from typing import Any

from hatchway.domain.records import Document
from hatchway.domain.runs import now_ms
from hatchway.errors import NotFound, ValidationFailed
from hatchway.secrets.box import SecretBox
from hatchway.store.flat import SingleStore

TAG_KIND = "cache-tag"
ENTRY_KIND = "cache"
DEFAULT_TTL_SECONDS = 300
MAX_TTL_SECONDS = 30 * 86400
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
SYSTEM_PROJECT = "__hatchway__"
SYSTEM_ENV = "global"


def check_tag(tag: str, loc: list[str | int]) -> str:
    if not TAG_RE.match(tag):
        raise ValidationFailed.at(loc, "a cache tag is letters, digits, '_', '.', ':' or '-', at most 128")
    return tag


class ResultCache:
    """Cached sync answers, keyed without plaintext secrets."""

    def __init__(self, store: SingleStore, secret_box: Any) -> None:
        self.store = store
        self._secret_box = secret_box
        self._pepper: bytes | None = None

    @property
    def box(self) -> SecretBox:
        box: SecretBox = self._secret_box() if callable(self._secret_box) else self._secret_box
        return box

    # ---- tags ------------------------------------------------------------------------------

    def set_tag(self, project_id: str, environment: str, tag: str, ttl_seconds: int) -> dict[str, Any]:
        check_tag(tag, ["path", "tag"])
        if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
            raise ValidationFailed.at(["body", "ttl_seconds"], f"between 1 and {MAX_TTL_SECONDS} seconds")
        self.store.put_document(Document(project_id, environment, TAG_KIND, tag, {"ttl_seconds": ttl_seconds}))
        return {"tag": tag, "ttl_seconds": ttl_seconds}

    def get_tag(self, project_id: str, environment: str, tag: str) -> dict[str, Any]:
        document = self.store.get_document(project_id, environment, TAG_KIND, tag)
        if document is None:
            raise NotFound(f"no cache tag {tag}")
        return {"tag": tag, "ttl_seconds": document.body["ttl_seconds"]}

    def delete_tag(self, project_id: str, environment: str, tag: str) -> None:
        """Forget a tag and every answer kept under it."""
        if not self.store.delete_document(project_id, environment, TAG_KIND, tag):
            raise NotFound(f"no cache tag {tag}")
        cursor = None
        while True:
            page = self.store.list_documents(project_id, environment, ENTRY_KIND, 500, cursor)
            for entry in page.items:
                if entry.name.startswith(tag + "/"):
                    self.store.delete_document(project_id, environment, ENTRY_KIND, entry.name)
            cursor = page.next
            if not cursor:
                return

    def ttl(self, project_id: str, environment: str, tag: str) -> int:
        document = self.store.get_document(project_id, environment, TAG_KIND, tag)
        return int(document.body["ttl_seconds"]) if document else DEFAULT_TTL_SECONDS

    # ---- entries ---------------------------------------------------------------------------

    def pepper(self) -> bytes:
        """The gateway-wide HMAC key for secret values (created once, stored encrypted)."""
        if self._pepper is None:
            document = self.store.get_document(SYSTEM_PROJECT, SYSTEM_ENV, "secret", "cache-pepper")
            if document is None:
                fresh = base64.b64encode(os.urandom(32)).decode()
                ciphertext = self.box.encrypt(fresh, SYSTEM_PROJECT, SYSTEM_ENV, "cache")
                self.store.put_document(
                    Document(SYSTEM_PROJECT, SYSTEM_ENV, "secret", "cache-pepper", {"ciphertext": ciphertext})
                )
                document = self.store.get_document(SYSTEM_PROJECT, SYSTEM_ENV, "secret", "cache-pepper")
            assert document is not None  # noqa: S101 - just written
            plain = self.box.decrypt(document.body["ciphertext"], SYSTEM_PROJECT, SYSTEM_ENV, "cache")
            self._pepper = base64.b64decode(plain)
        return self._pepper

    def mask(self, secret: str) -> str:
        return "hmac:" + hmac.new(self.pepper(), secret.encode(), hashlib.sha256).hexdigest()

    def key(self, tag: str, parts: list[Any]) -> str:
        material = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()
        return f"{tag}/{hashlib.sha256(material).hexdigest()}"

    def get(self, project_id: str, environment: str, key: str) -> dict[str, Any] | None:
        document = self.store.get_document(project_id, environment, ENTRY_KIND, key)
        return document.body if document else None

    def put(self, project_id: str, environment: str, key: str, answer: dict[str, Any], ttl_seconds: int) -> None:
        self.store.put_document(
            Document(project_id, environment, ENTRY_KIND, key, answer, expires_at=now_ms() + ttl_seconds * 1000)
        )
