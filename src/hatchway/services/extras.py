"""What users bring from other platforms: cache tags, session types, run callbacks.

* **Cache tags** (Ductape's ``cache``): a sync call with ``cache: "<tag>"`` first looks for an answer
  stored under a key derived from the project, environment, action digest, sync action, parameters
  and ``input``; a hit answers without running anything. Secret values never enter a key in any
  readable form: each is replaced by an HMAC under a gateway-wide pepper (itself kept encrypted), so
  equal secrets still make equal keys while a key reveals nothing of them. A tag's lifetime is set
  with ``PUT /v1/projects/{p}/caches/{tag}``; unregistered tags keep answers for five minutes.
* **Session types** (Ductape's ``session``): JWTs whose claims fill ``$Session{...}`` placeholders.
  A project registers a session type per tag - an HS256 shared secret (kept encrypted like any
  secret) or an RS256/ES256 public key. A run request with ``session: {tag, token}`` has its token
  verified (signature, ``exp``, ``nbf``, and ``iss``/``aud`` when the type names them) before
  anything else happens; a bad, expired or foreign token is 401 and nothing runs.
* **Callbacks**: the final run record POSTed to a URL the request named. Each project has a signing
  secret (kept encrypted; an admin reads or rotates it through the API). A delivery carries
  ``X-Hatchway-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is HMAC-SHA256 over
  ``"<t>.<body>"``, so a receiver can check both origin and freshness; the
  :class:`~hatchway.ports.CallbackSender` delivers and retries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from hatchway.domain.records import Document
from hatchway.domain.runs import Run
from hatchway.domain.tenants import Principal
from hatchway.errors import NotFound, Unauthorized, ValidationFailed
from hatchway.ports import CallbackSender, Clock, DocumentRepo, SecretBox
from hatchway.services.auth import Auth, Tenants

# ---- cache tags -------------------------------------------------------------------------------

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


@dataclass
class CacheTag:
    tag: str
    ttl_seconds: int

    def to_api(self) -> dict[str, Any]:
        return {"tag": self.tag, "ttl_seconds": self.ttl_seconds}


class CacheTags:
    """Cache tags and the sync answers kept under them, keyed without plaintext secrets."""

    def __init__(self, documents: DocumentRepo, box: SecretBox, auth: Auth, tenants: Tenants, clock: Clock) -> None:
        self.documents = documents
        self.box = box
        self.auth = auth
        self.tenants = tenants
        self.clock = clock
        self._pepper: bytes | None = None

    def set(self, principal: Principal, project_id: str, environment: str, tag: str, ttl_seconds: int) -> CacheTag:
        self.auth.authorize(principal, project_id, environment, "actions:write")
        self.tenants.require_project(project_id)
        check_tag(tag, ["path", "tag"])
        if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
            raise ValidationFailed.at(["body", "ttl_seconds"], f"between 1 and {MAX_TTL_SECONDS} seconds")
        self.documents.put_document(Document(project_id, environment, TAG_KIND, tag, {"ttl_seconds": ttl_seconds}))
        return CacheTag(tag, ttl_seconds)

    def get(self, principal: Principal, project_id: str, environment: str, tag: str) -> CacheTag:
        self.auth.authorize(principal, project_id, environment, "actions:read")
        document = self.documents.get_document(project_id, environment, TAG_KIND, tag)
        if document is None:
            raise NotFound(f"no cache tag {tag}")
        return CacheTag(tag, document.body["ttl_seconds"])

    def delete(self, principal: Principal, project_id: str, environment: str, tag: str) -> None:
        """Forget a tag and every answer kept under it."""
        self.auth.authorize(principal, project_id, environment, "actions:write")
        if not self.documents.delete_document(project_id, environment, TAG_KIND, tag):
            raise NotFound(f"no cache tag {tag}")
        cursor = None
        while True:
            page = self.documents.list_documents(project_id, environment, ENTRY_KIND, 500, cursor)
            for entry in page.items:
                if entry.name.startswith(tag + "/"):
                    self.documents.delete_document(project_id, environment, ENTRY_KIND, entry.name)
            cursor = page.next
            if not cursor:
                return

    def ttl(self, project_id: str, environment: str, tag: str) -> int:
        document = self.documents.get_document(project_id, environment, TAG_KIND, tag)
        return int(document.body["ttl_seconds"]) if document else DEFAULT_TTL_SECONDS

    def pepper(self) -> bytes:
        """The gateway-wide HMAC key for secret values (created once, stored encrypted)."""
        if self._pepper is None:
            documents = self.documents
            document = documents.get_document(SYSTEM_PROJECT, SYSTEM_ENV, "secret", "cache-pepper")
            if document is None:
                fresh = base64.b64encode(os.urandom(32)).decode()
                ciphertext = self.box.encrypt(fresh, SYSTEM_PROJECT, SYSTEM_ENV, "cache")
                documents.put_document(
                    Document(SYSTEM_PROJECT, SYSTEM_ENV, "secret", "cache-pepper", {"ciphertext": ciphertext})
                )
                document = documents.get_document(SYSTEM_PROJECT, SYSTEM_ENV, "secret", "cache-pepper")
            assert document is not None  # noqa: S101 - just written
            plain = self.box.decrypt(document.body["ciphertext"], SYSTEM_PROJECT, SYSTEM_ENV, "cache")
            self._pepper = base64.b64decode(plain)
        return self._pepper

    def mask(self, secret: str) -> str:
        return "hmac:" + hmac.new(self.pepper(), secret.encode(), hashlib.sha256).hexdigest()

    def key(self, tag: str, parts: list[Any]) -> str:
        material = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()
        return f"{tag}/{hashlib.sha256(material).hexdigest()}"

    def lookup(self, project_id: str, environment: str, key: str) -> dict[str, Any] | None:
        """The answer kept under ``key``, if one is."""
        document = self.documents.get_document(project_id, environment, ENTRY_KIND, key)
        return document.body if document else None

    def keep(self, project_id: str, environment: str, key: str, answer: dict[str, Any], ttl_seconds: int) -> None:
        expires_at = self.clock.now_ms() + ttl_seconds * 1000
        self.documents.put_document(Document(project_id, environment, ENTRY_KIND, key, answer, expires_at=expires_at))


# ---- session types ----------------------------------------------------------------------------

SESSION_KIND = "session"
ALGORITHMS = ("HS256", "RS256", "ES256")
SESSION_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass
class SessionType:
    """A registered session type as the API shows it (never its secret)."""

    tag: str
    algorithm: str
    issuer: str | None
    audience: str | None
    has_secret: bool

    @classmethod
    def of(cls, tag: str, stored: dict[str, Any]) -> SessionType:
        return cls(tag, stored["algorithm"], stored.get("issuer"), stored.get("audience"), "secret" in stored)

    def to_api(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "algorithm": self.algorithm,
            "issuer": self.issuer,
            "audience": self.audience,
            "has_secret": self.has_secret,
        }


class SessionTypes:
    """Registered session types and token verification."""

    def __init__(self, documents: DocumentRepo, box: SecretBox, auth: Auth, tenants: Tenants) -> None:
        self.documents = documents
        self.box = box
        self.auth = auth
        self.tenants = tenants

    def put(
        self, principal: Principal, project_id: str, environment: str, tag: str, body: dict[str, Any]
    ) -> SessionType:
        self.auth.authorize(principal, project_id, environment, "admin")
        self.tenants.require_project(project_id)
        if not SESSION_TAG_RE.match(tag):
            raise ValidationFailed.at(["path", "tag"], "a session tag is letters, digits, '_', '.' or '-'")
        algorithm = body.get("algorithm")
        if algorithm not in ALGORITHMS:
            raise ValidationFailed.at(["body", "algorithm"], f"algorithm is one of {', '.join(ALGORITHMS)}")
        stored: dict[str, Any] = {
            "algorithm": algorithm,
            "issuer": body.get("issuer"),
            "audience": body.get("audience"),
        }
        if algorithm == "HS256":
            secret = body.get("secret")
            if not isinstance(secret, str) or len(secret) < 16:
                raise ValidationFailed.at(["body", "secret"], "an HS256 secret of at least 16 characters")
            stored["secret"] = self.box.encrypt(secret, project_id, environment, f"session:{tag}")
        else:
            key = body.get("public_key")
            if not isinstance(key, str) or "PUBLIC KEY" not in key:
                raise ValidationFailed.at(["body", "public_key"], "a PEM public key")
            try:
                from cryptography.hazmat.primitives.serialization import load_pem_public_key

                load_pem_public_key(key.encode())
            except ValueError:
                raise ValidationFailed.at(["body", "public_key"], "not a readable PEM public key") from None
            stored["public_key"] = key
        self.documents.put_document(Document(project_id, environment, SESSION_KIND, tag, stored))
        return SessionType.of(tag, stored)

    def get(self, principal: Principal, project_id: str, environment: str, tag: str) -> SessionType:
        self.auth.authorize(principal, project_id, environment, "admin")
        document = self.documents.get_document(project_id, environment, SESSION_KIND, tag)
        if document is None:
            raise NotFound(f"no session type {tag}")
        return SessionType.of(tag, document.body)

    def delete(self, principal: Principal, project_id: str, environment: str, tag: str) -> None:
        self.auth.authorize(principal, project_id, environment, "admin")
        if not self.documents.delete_document(project_id, environment, SESSION_KIND, tag):
            raise NotFound(f"no session type {tag}")

    def verify(self, project_id: str, environment: str, session: dict[str, Any]) -> dict[str, Any]:
        """The token's claims, or 401 (unknown tag included: a foreign session looks like a bad one)."""
        import jwt

        tag, token = session.get("tag"), session.get("token")
        if not isinstance(tag, str) or not isinstance(token, str):
            raise Unauthorized("a session needs a tag and a token")
        document = self.documents.get_document(project_id, environment, SESSION_KIND, tag)
        if document is None:
            raise Unauthorized("the session token is not valid")
        stored = document.body
        key = (
            self.box.decrypt(stored["secret"], project_id, environment, f"session:{tag}")
            if stored["algorithm"] == "HS256"
            else stored["public_key"]
        )
        options: Any = {"require": ["exp"], "verify_aud": bool(stored.get("audience"))}
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[stored["algorithm"]],
                audience=stored.get("audience"),
                issuer=stored.get("issuer"),
                options=options,
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the session token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("the session token is not valid yet") from None
        except jwt.PyJWTError:
            raise Unauthorized("the session token is not valid") from None
        return claims


# ---- callbacks --------------------------------------------------------------------------------

SECRET_KIND = "secret"  # noqa: S105 - a document kind, not a secret
SECRET_NAME = "callback-signing"  # noqa: S105 - a document name


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2048:
        raise ValidationFailed.at(["body", "callback_url"], "an http(s) URL")
    return url


def signature(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class Callbacks:
    """Signing secrets, and the final run record handed to the sender when a run ends."""

    def __init__(
        self, documents: DocumentRepo, box: SecretBox, auth: Auth, tenants: Tenants, sender: CallbackSender
    ) -> None:
        self.documents = documents
        self.box = box
        self.auth = auth
        self.tenants = tenants
        self.sender = sender

    def secret(self, principal: Principal, project_id: str, rotate: bool) -> str:
        """The project's callback signing secret (admins only; ``rotate`` makes a new one)."""
        self.auth.authorize(principal, project_id, None, "admin")
        self.tenants.require_project(project_id)
        return self.signing_secret(project_id, rotate)

    def signing_secret(self, project_id: str, rotate: bool = False) -> str:
        """The project's signing secret, created on first use."""
        document = self.documents.get_document(project_id, "*", SECRET_KIND, SECRET_NAME)
        if document is not None and not rotate:
            plain: str = self.box.decrypt(document.body["ciphertext"], project_id, "*", "callbacks")
            return plain
        fresh = "whsec_" + secrets.token_urlsafe(32)
        ciphertext = self.box.encrypt(fresh, project_id, "*", "callbacks")
        self.documents.put_document(Document(project_id, "*", SECRET_KIND, SECRET_NAME, {"ciphertext": ciphertext}))
        return fresh

    def after_terminal(self, run: Run) -> None:
        """A run reached its end: deliver its callback, if it asked for one."""
        url = run.options.get("callback_url")
        if not (url and run.is_terminal):
            return
        body = json.dumps(run.to_api(), separators=(",", ":"), ensure_ascii=False).encode()
        project_id = run.project_id

        def sign(payload: bytes, timestamp: int) -> str:
            # the secret is read at each try: a rotation meanwhile signs the retries with the new one
            return signature(self.signing_secret(project_id), payload, timestamp)

        self.sender.enqueue(url, body, run.id, sign)
