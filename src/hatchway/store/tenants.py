"""Rules for projects and their tokens; backends implement the eight primitives."""

from __future__ import annotations

from abc import ABC, abstractmethod

from hatchway.domain.records import Page
from hatchway.domain.tenants import Project, TokenRecord
from hatchway.errors import Conflict
from hatchway.store._cursor import decode_cursor, encode_cursor


class BaseTenantRepo(ABC):
    """Projects (created once) and their tokens (a token is revoked only from its own project)."""

    # ---- primitives ------------------------------------------------------------------------

    @abstractmethod
    def _put_project(self, project: Project, unique_name: bool = True) -> bool:
        """Insert if absent; False if the id exists, or (``unique_name``) another project has its
        name - atomically: two creators of one name cannot both win."""

    @abstractmethod
    def _find_project(self, name: str) -> Project | None:
        """The project of that name (the first created, for names given before they were unique)."""

    @abstractmethod
    def _get_project(self, project_id: str) -> Project | None: ...

    @abstractmethod
    def _list_projects(self, after: str | None, limit: int) -> list[Project]:
        """Up to ``limit`` projects with an id above ``after``, by id."""

    @abstractmethod
    def _put_token(self, token: TokenRecord) -> None:
        """Insert or replace."""

    @abstractmethod
    def _get_token(self, token_id: str) -> TokenRecord | None: ...

    @abstractmethod
    def _list_tokens(self, project_id: str) -> list[TokenRecord]:
        """A project's tokens, oldest first."""

    @abstractmethod
    def _delete_token(self, token_id: str) -> bool: ...

    @abstractmethod
    def _touch_token(self, token_id: str, when: int) -> None:
        """Set ``last_used_at`` of a token that exists (a missing one stays missing)."""

    # ---- rules -----------------------------------------------------------------------------

    def create_project(self, project: Project) -> Project:
        """A new project; its id and its name are unique in the deployment (Conflict)."""
        if not self._put_project(project):
            if self._get_project(project.id) is not None:
                raise Conflict(f"project {project.id} already exists")
            raise Conflict(f"a project named {project.name} already exists")
        return project

    def ensure_project(self, project: Project) -> Project:
        self._put_project(project, unique_name=False)
        return self._get_project(project.id) or project

    def find_project(self, name: str) -> Project | None:
        """The project named ``name``, if there is one."""
        return self._find_project(name)

    def get_project(self, project_id: str) -> Project | None:
        return self._get_project(project_id)

    def list_projects(self, limit: int, cursor: str | None) -> Page[Project]:
        scope = ("projects",)
        projects = self._list_projects(decode_cursor(cursor, scope), limit + 1)
        more = len(projects) > limit
        return Page(projects[:limit], encode_cursor(scope, projects[limit - 1].id) if more else None)

    def put_token(self, token: TokenRecord) -> None:
        self._put_token(token)

    def get_token(self, token_id: str) -> TokenRecord | None:
        return self._get_token(token_id)

    def list_tokens(self, project_id: str) -> list[TokenRecord]:
        return self._list_tokens(project_id)

    def delete_token(self, project_id: str, token_id: str) -> bool:
        token = self._get_token(token_id)
        if token is None or token.project_id != project_id:
            return False
        return self._delete_token(token_id)

    def touch_token(self, token_id: str, when: int) -> None:
        self._touch_token(token_id, when)
