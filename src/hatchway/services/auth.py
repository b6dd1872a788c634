"""Who may do what: authentication, authorisation, projects and their tokens.

:class:`Auth` turns an ``Authorization`` header into a :class:`~hatchway.domain.tenants.Principal`
and answers whether it may act in a project, an environment, with a scope - every use case asks
it first. :class:`Tenants` manages projects and tokens and encrypts secret values for a project.
"""

from __future__ import annotations

import hmac
import secrets as pysecrets
import threading

from hatchway.config import InputLimits
from hatchway.domain.parameters import is_ciphertext
from hatchway.domain.records import Page
from hatchway.domain.tenants import (
    DEFAULT_PROJECT,
    SCOPES,
    TOKEN_PREFIX,
    NewToken,
    Principal,
    Project,
    TokenRecord,
    hash_secret,
    random_alnum,
    split_token,
)
from hatchway.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from hatchway.ports import Clock, SecretBox, TenantRepo

#: a token's last use is written at most this often (milliseconds)
TOUCH_EVERY_MS = 60_000


class Auth:
    """Authentication and authorisation over the tenants' tokens."""

    def __init__(self, repo: TenantRepo, clock: Clock) -> None:
        self.repo = repo
        self.clock = clock
        self._bootstrap_hash: str | None = None
        self._touched: dict[str, int] = {}
        self._lock = threading.Lock()

    def bootstrap(self, token: str) -> None:
        """Make sure the default project exists, and accept ``token`` as the global admin's."""
        self.repo.ensure_project(Project(DEFAULT_PROJECT, "local", self.clock.now_ms()))
        self.set_bootstrap_token(token)

    def set_bootstrap_token(self, token: str) -> None:
        self._bootstrap_hash = hash_secret(token)

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized()
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("use 'Authorization: Bearer <token>'")
        presented = hash_secret(token)
        if self._bootstrap_hash is not None and hmac.compare_digest(presented, self._bootstrap_hash):
            return Principal(None, None, frozenset(SCOPES))
        token_id, secret = split_token(token)
        record = self.repo.get_token(token_id) if token_id else None
        expected = record.secret_hash if record else hash_secret("x")  # same work either way
        if record is None or not hmac.compare_digest(hash_secret(secret), expected):
            raise Unauthorized("the token is unknown or revoked")
        now = self.clock.now_ms()
        if record.expires_at is not None and record.expires_at <= now:
            raise Unauthorized("the token has expired")
        with self._lock:
            is_due = now - self._touched.get(record.id, 0) > TOUCH_EVERY_MS
            if is_due:
                self._touched[record.id] = now
        if is_due:
            self.repo.touch_token(record.id, now)
        envs = frozenset(record.environments) if record.environments is not None else None
        return Principal(record.id, record.project_id, frozenset(record.scopes), envs)

    def exchange_client_credentials(self, client_id: str, client_secret: str) -> str:
        """OAuth client credentials for SDKs that speak them: the client is a token (its id and the
        token itself; ``hatchway-admin`` for the bootstrap token) and the access token is that token."""
        principal = self.authenticate(f"Bearer {client_secret}")
        expected = principal.token_id or "hatchway-admin"
        if not hmac.compare_digest(client_id.encode(), expected.encode()):
            raise Unauthorized("the client id does not match the client secret")
        return client_secret

    def authorize(self, principal: Principal, project_id: str, environment: str | None, scope: str | None) -> None:
        """Raise 403 if the principal may not use ``scope`` in this project and environment.

        Every project-scoped operation calls this first; a token of another project is refused the
        same way whether or not the project exists, so nothing about other tenants leaks.
        ``environment`` None is an operation on the whole project (its tokens, its callback secret):
        a token limited to some environments stays inside them and may not do it.
        """
        self.authorize_project(principal, project_id)
        if principal.environments is not None:
            if environment is None:
                raise Forbidden(
                    f"this token is limited to the {', '.join(sorted(principal.environments)) or 'no'} "
                    "environment(s); this operation concerns the whole project and needs a token for all of them"
                )
            if environment not in principal.environments:
                raise Forbidden(f"this token may not use the {environment} environment")
        if scope is not None and scope not in principal.scopes and "admin" not in principal.scopes:
            raise Forbidden(f"this token lacks the {scope} scope")

    def authorize_project(self, principal: Principal, project_id: str) -> None:
        """Raise 403 unless the principal belongs to the project (the check before anything else)."""
        if not principal.is_global_admin and principal.project_id != project_id:
            raise Forbidden("this token belongs to another project")


class Tenants:
    """Projects, their tokens, and secret values encrypted for them."""

    def __init__(self, repo: TenantRepo, auth: Auth, box: SecretBox, clock: Clock, limits: InputLimits) -> None:
        self.repo = repo
        self.auth = auth
        self.box = box
        self.clock = clock
        self.limits = limits

    def require_project(self, project_id: str) -> None:
        """404 unless the project exists (for use cases that create something in it)."""
        if self.repo.get_project(project_id) is None:
            raise NotFound(f"no project {project_id}")

    def create_project(self, principal: Principal, name: str, project_id: str | None = None) -> Project:
        if not principal.is_global_admin:
            raise Forbidden("only the global admin token creates projects")
        project = Project(project_id or "proj_" + random_alnum(16), name, self.clock.now_ms())
        return self.repo.create_project(project)

    def get_project(self, principal: Principal, project_id: str) -> Project:
        self.auth.authorize_project(principal, project_id)  # any token of the project may read its name
        project = self.repo.get_project(project_id)
        if project is None:
            raise NotFound(f"no project {project_id}")
        return project

    def list_projects(self, principal: Principal, limit: int, cursor: str | None) -> Page[Project]:
        """The projects ``principal`` can see: every one for the global admin, else its own."""
        if principal.is_global_admin:
            return self.repo.list_projects(limit, cursor)
        assert principal.project_id is not None  # noqa: S101 - a project token names its project
        if cursor:  # the one page of a project token has no next; a cursor is not one this list issued
            raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued")
        project = self.repo.get_project(principal.project_id)
        return Page([project] if project else [], None)

    def create_token(
        self,
        principal: Principal,
        project_id: str,
        scopes: list[str],
        environments: list[str] | None = None,
        expires_at: int | None = None,
        name: str | None = None,
    ) -> NewToken:
        self.get_project(principal, project_id)
        if principal.environments is not None and environments:
            # an admin token limited to environments makes tokens that stay inside them
            if not set(environments) <= principal.environments:
                raise Forbidden("a token cannot create a token for environments it may not use itself")
            for environment in environments:
                self.auth.authorize(principal, project_id, environment, "admin")
        else:
            self.auth.authorize(principal, project_id, None, "admin")  # a token for every environment
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown:
            raise ValidationFailed.at(["body", "scopes"], f"unknown scope(s): {', '.join(unknown)}")
        now = self.clock.now_ms()
        if expires_at is not None and expires_at <= now:
            raise ValidationFailed.at(["body", "expires_at"], "the expiry is in the past")
        token_id_part = random_alnum(16).lower()
        secret = pysecrets.token_urlsafe(32)
        record = TokenRecord(
            id="tok_" + token_id_part,
            project_id=project_id,
            secret_hash=hash_secret(secret),
            scopes=sorted(set(scopes)),
            environments=sorted(set(environments)) if environments is not None else None,
            created_at=now,
            expires_at=expires_at,
            name=name,
        )
        self.repo.put_token(record)
        return NewToken(record, f"{TOKEN_PREFIX}{token_id_part}_{secret}")

    def list_tokens(self, principal: Principal, project_id: str) -> list[TokenRecord]:
        self.get_project(principal, project_id)
        self.auth.authorize(principal, project_id, None, "admin")
        return self.repo.list_tokens(project_id)

    def revoke_token(self, principal: Principal, project_id: str, token_id: str) -> None:
        self.get_project(principal, project_id)
        self.auth.authorize(principal, project_id, None, "admin")
        if not self.repo.delete_token(project_id, token_id):
            raise NotFound(f"no token {token_id}")

    def encrypt(
        self,
        principal: Principal,
        project_id: str,
        environment: str,
        value: str,
        action: str | None = None,
        where: list[str | int] | None = None,
    ) -> str:
        """A ciphertext of ``value`` (at ``where`` in the request, for a refusal's ``loc``)."""
        self.auth.authorize(principal, project_id, environment, "secrets:encrypt")
        self.require_project(project_id)
        if is_ciphertext(value):
            return value
        limit = self.limits.max_secret_bytes
        if len(value.encode()) > limit:
            raise ValidationFailed.at(where or ["body", "value"], f"a secret may hold at most {limit} bytes",
                                      "secret_too_long")  # fmt: skip
        return self.box.encrypt(value, project_id, environment, action)
