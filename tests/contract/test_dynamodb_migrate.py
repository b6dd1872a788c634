"""``hatchway aws migrate`` on the store: projects written before GET /v1/projects (no gsi1 keys)
and before names were unique (no name claim) are listed and their names protected afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from hatchway.domain.tenants import Project
from hatchway.errors import Conflict
from tests.contract.backends import drop, dynamodb_store
from tests.contract.stored_formats import FIXTURES, dynamodb_items, dynamodb_restore

pytestmark = pytest.mark.aws


@pytest.fixture
def dynamodb(moto_aws: Any) -> Iterator[Any]:
    store = dynamodb_store(moto_aws)
    yield store
    drop(store)


def old_project(store: Any, project_id: str, name: str, created_at: int) -> None:
    """A project item as versions before issue 19/20 wrote it: no gsi1 keys, no name claim."""
    item = {
        "pk": {"S": f"PROJECT#{project_id}"},
        "sk": {"S": "P"},
        "name": {"S": name},
        "created_at": {"N": str(created_at)},
    }
    store.table.db.put_item(TableName=store.table.name, Item=item)


def test_old_projects_are_listed_and_their_names_claimed_after_migrate(dynamodb: Any) -> None:
    # Given a table written by an older version (the pre-split fixture's project proj_fmt), and two
    # old projects that share a name, from before names were unique
    dynamodb_restore(dynamodb.table.db, dynamodb.table.name, json.loads((FIXTURES / "dynamodb.json").read_text()))
    old_project(dynamodb, "proj_twinb", "twins", 1_767_225_600_500)
    old_project(dynamodb, "proj_twina", "twins", 1_767_225_600_900)
    tenants = dynamodb.tenants
    assert tenants.list_projects(50, None).items == []  # what GET /v1/projects answered: nothing
    assert tenants.find_project("Formats") is None
    # When the table is migrated
    done = dynamodb.migrate()
    # Then every old project is listed, by id
    assert sorted(done.indexed) == ["proj_fmt", "proj_twina", "proj_twinb"]
    assert [p.id for p in tenants.list_projects(50, None).items] == ["proj_fmt", "proj_twina", "proj_twinb"]
    # and each name is claimed: by the oldest project of that name when two shared it
    assert sorted(done.claimed) == ["proj_fmt", "proj_twinb"]
    assert tenants.find_project("Formats").id == "proj_fmt"
    assert tenants.find_project("twins").id == "proj_twinb"
    # so a new project cannot take an old project's name
    with pytest.raises(Conflict, match="a project named Formats already exists"):
        tenants.create_project(Project("proj_new", "Formats", 1_767_225_700_000))
    # and the migrated items are exactly what today's code writes for a project
    items = {item["pk"]["S"]: item for item in dynamodb_items(dynamodb.table.db, dynamodb.table.name)}
    assert items["PROJECT#proj_fmt"] == {
        "pk": {"S": "PROJECT#proj_fmt"}, "sk": {"S": "P"}, "name": {"S": "Formats"},
        "created_at": {"N": "1767225600000"}, "gsi1pk": {"S": "PROJECTS"}, "gsi1sk": {"S": "proj_fmt"},
    }  # fmt: skip
    assert items["PROJECTNAME#Formats"] == {
        "pk": {"S": "PROJECTNAME#Formats"},
        "sk": {"S": "N"},
        "project_id": {"S": "proj_fmt"},
    }


def test_migrate_is_idempotent_and_leaves_todays_projects_alone(dynamodb: Any) -> None:
    tenants = dynamodb.tenants
    tenants.create_project(Project("proj_today", "today", 1_767_225_600_000))
    old_project(dynamodb, "proj_old", "old", 1_767_225_600_100)
    before = dynamodb_items(dynamodb.table.db, dynamodb.table.name)
    first = dynamodb.migrate()
    assert (first.indexed, first.claimed) == (["proj_old"], ["proj_old"])
    after = dynamodb_items(dynamodb.table.db, dynamodb.table.name)
    assert [item for item in after if item not in before] == [
        {"pk": {"S": "PROJECT#proj_old"}, "sk": {"S": "P"}, "name": {"S": "old"}, "created_at": {"N": "1767225600100"},
         "gsi1pk": {"S": "PROJECTS"}, "gsi1sk": {"S": "proj_old"}},
        {"pk": {"S": "PROJECTNAME#old"}, "sk": {"S": "N"}, "project_id": {"S": "proj_old"}},
    ]  # fmt: skip
    # a second run finds nothing to do and changes nothing
    again = dynamodb.migrate()
    assert (again.indexed, again.claimed) == ([], [])
    assert dynamodb_items(dynamodb.table.db, dynamodb.table.name) == after
