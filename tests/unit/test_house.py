"""The house rules a reader relies on: no module over 800 lines (the console's assets aside), no
class over 400. Counted with ``ast`` on the source tree, so a growing file fails here by name."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

SOURCE = REPO / "src" / "hatchway"
MAX_MODULE_LINES = 800
MAX_CLASS_LINES = 400


def modules() -> list[Path]:
    return sorted(path for path in SOURCE.rglob("*.py") if "ui" not in path.relative_to(SOURCE).parts[:1])


def test_no_module_is_longer_than_800_lines() -> None:
    assert modules(), "no source found"
    long = {
        str(path.relative_to(REPO)): n
        for path in modules()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_class_is_longer_than_400_lines() -> None:
    long = {
        f"{path.relative_to(REPO)}:{node.name}": size
        for path in modules()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and (size := node.end_lineno - node.lineno + 1) > MAX_CLASS_LINES  # type: ignore[operator]
    }
    assert long == {}
