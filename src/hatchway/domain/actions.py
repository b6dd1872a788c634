"""Actions as the store keeps them: immutable versions behind a head, and a resolved version."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hatchway.domain.runs import iso
from hatchway.domain.spec import ActionSpec

#: how many levels of ``inherits`` a version may stack
MAX_INHERIT_DEPTH = 5
#: parsed specs kept per process (by digest)
SPEC_CACHE_SIZE = 1024


@dataclass
class ActionRecord:
    """One immutable version of an action."""

    project_id: str
    environment: str
    name: str
    version: int
    digest: str
    created_at: int
    spec: dict[str, Any]

    @property
    def tags(self) -> list[str]:
        return list(self.spec.get("tags", []))

    def to_api(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "created_at": iso(self.created_at),
            "spec": self.spec,
        }


@dataclass
class ActionHead:
    """Points at an action's latest version; ``deleted`` hides the action but keeps its versions."""

    project_id: str
    environment: str
    name: str
    latest_version: int
    tags: list[str] = field(default_factory=list)
    deleted: bool = False
    #: the latest version itself, when the backend keeps it with the head (saves a read)
    record: ActionRecord | None = None


@dataclass
class Resolved:
    """An action version with its effective spec (inheritance applied)."""

    record: ActionRecord
    spec: ActionSpec
