"""The tenant repository's contract: projects created once, tokens kept in their project.

Each test runs once per backend of the ``repos`` fixture (``conftest.py``); nothing here knows which.
"""

from __future__ import annotations

import pytest

from hatchway.domain.tenants import Project, TokenRecord
from hatchway.errors import Conflict
from hatchway.store.tenants import BaseTenantRepo
from tests.contract.records import P, Q


def test_projects_are_created_once(tenants: BaseTenantRepo) -> None:
    created = tenants.create_project(Project(P, "one", 1000))
    assert tenants.get_project(P) == created
    with pytest.raises(Conflict):
        tenants.create_project(Project(P, "again", 2000))
    # ensure_project keeps the first one
    assert tenants.ensure_project(Project(P, "other", 3000)) == Project(P, "one", 1000)
    assert tenants.get_project("proj_missing") is None


def test_project_names_are_unique_and_find_their_project(tenants: BaseTenantRepo) -> None:
    created = tenants.create_project(Project(P, "team-a", 1000))
    with pytest.raises(Conflict, match="named team-a"):
        tenants.create_project(Project(Q, "team-a", 2000))
    assert tenants.get_project(Q) is None  # the refused project left nothing behind
    assert tenants.find_project("team-a") == created
    assert tenants.find_project("team-b") is None
    assert tenants.create_project(Project(Q, "team-b", 2000)) == tenants.find_project("team-b")


def test_tokens_round_trip_and_stay_in_their_project(tenants: BaseTenantRepo) -> None:
    first = TokenRecord("tok_a", P, "hash-a", ["runs:read"], None, 1000, expires_at=99_000, name="ci")
    second = TokenRecord("tok_b", P, "hash-b", ["admin"], ["development"], 2000)
    other = TokenRecord("tok_c", Q, "hash-c", ["admin"], [], 1500)
    for token in (second, other, first):
        tenants.put_token(token)
    assert tenants.get_token("tok_a") == first
    assert tenants.get_token("tok_c") == other  # an empty environment list is not "all environments"
    assert [t.id for t in tenants.list_tokens(P)] == ["tok_a", "tok_b"]
    assert tenants.get_token("tok_missing") is None

    tenants.touch_token("tok_a", 5000)
    assert tenants.get_token("tok_a").last_used_at == 5000  # type: ignore[union-attr]
    tenants.touch_token("tok_missing", 5000)
    assert tenants.get_token("tok_missing") is None

    # revoking needs the token's own project
    assert tenants.delete_token(Q, "tok_a") is False
    assert tenants.get_token("tok_a") is not None
    assert tenants.delete_token(P, "tok_a") is True
    assert tenants.delete_token(P, "tok_a") is False
    assert tenants.get_token("tok_a") is None
    assert [t.id for t in tenants.list_tokens(P)] == ["tok_b"]


def test_projects_are_listed_by_id_in_pages(tenants: BaseTenantRepo) -> None:
    existing = {p.id for p in tenants.list_projects(500, None).items}  # the bootstrap's own, if any
    for number in (3, 1, 2):
        tenants.create_project(Project(f"proj_list{number}", f"list {number}", 1000 * number))
    seen: list[str] = []
    cursor = None
    while True:
        page = tenants.list_projects(2, cursor)
        assert len(page.items) <= 2
        seen.extend(p.id for p in page.items)
        cursor = page.next
        if cursor is None:
            break
    assert [p for p in seen if p not in existing] == ["proj_list1", "proj_list2", "proj_list3"]
