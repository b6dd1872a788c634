"""Session types (Ductape's ``session``): JWTs whose claims fill ``$Session{...}`` placeholders.

A project registers a session type per tag - an HS256 shared secret (kept encrypted like any
secret) or an RS256/ES256 public key. A run request with ``session: {tag, token}`` has its token
verified (signature, ``exp``, ``nbf``, and ``iss``/``aud`` when the type names them) before
anything else happens; then ``$Session{claim}{nested.path}`` placeholders in its parameters and
``input`` are replaced by claim values. A bad, expired or foreign token is 401 and nothing runs.
"""

from __future__ import annotations

import re
from typing import Any

from hatchway.domain.records import Document
from hatchway.errors import NotFound, Unauthorized, ValidationFailed
from hatchway.secrets.box import SecretBox
from hatchway.store.flat import SingleStore

KIND = "session"
ALGORITHMS = ("HS256", "RS256", "ES256")
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class SessionTypes:
    """Registered session types and token verification."""

    def __init__(self, store: SingleStore, secret_box: Any) -> None:
        self.store = store
        self._secret_box = secret_box

    @property
    def box(self) -> SecretBox:
        box: SecretBox = self._secret_box() if callable(self._secret_box) else self._secret_box
        return box

    def put(self, project_id: str, environment: str, tag: str, body: dict[str, Any]) -> dict[str, Any]:
        if not TAG_RE.match(tag):
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
        self.store.put_document(Document(project_id, environment, KIND, tag, stored))
        return self.describe(tag, stored)

    @staticmethod
    def describe(tag: str, stored: dict[str, Any]) -> dict[str, Any]:
        return {
            "tag": tag,
            "algorithm": stored["algorithm"],
            "issuer": stored.get("issuer"),
            "audience": stored.get("audience"),
            "has_secret": "secret" in stored,
        }

    def get(self, project_id: str, environment: str, tag: str) -> dict[str, Any]:
        document = self.store.get_document(project_id, environment, KIND, tag)
        if document is None:
            raise NotFound(f"no session type {tag}")
        return self.describe(tag, document.body)

    def delete(self, project_id: str, environment: str, tag: str) -> None:
        if not self.store.delete_document(project_id, environment, KIND, tag):
            raise NotFound(f"no session type {tag}")

    def verify(self, project_id: str, environment: str, session: dict[str, Any]) -> dict[str, Any]:
        """The token's claims, or 401 (unknown tag included: a foreign session looks like a bad one)."""
        import jwt

        tag, token = session.get("tag"), session.get("token")
        if not isinstance(tag, str) or not isinstance(token, str):
            raise Unauthorized("a session needs a tag and a token")
        document = self.store.get_document(project_id, environment, KIND, tag)
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
