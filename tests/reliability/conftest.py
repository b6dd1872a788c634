"""The reliability suite's figures: every test records what it measured; the session prints a table.

Each test adds its figures (``figures.add("R1", "runs lost", 0, "0")``) before asserting, so a
failing run still shows what was measured. At the end of the session the table is printed in the
terminal summary and written to ``tests/artifacts/reliability-figures.md`` (and ``.json``).
``--reliability=bounded`` (what CI passes) runs every scenario at a smaller scale.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest

from tests.helpers import REPO

REPORT = REPO / "tests" / "artifacts" / "reliability-figures"
_KEY = pytest.StashKey["Figures"]()


@dataclass
class Figure:
    rid: str
    what: str
    value: str
    must: str
    is_ok: bool


@dataclass
class Figures:
    scale: str
    rows: list[Figure] = field(default_factory=list)

    def add(self, rid: str, what: str, value: Any, must: str = "", is_ok: bool = True) -> bool:
        """Record one figure; returns ``is_ok`` so a test can assert on it after recording."""
        if isinstance(value, float):
            value = f"{value:.3g}"
        self.rows.append(Figure(rid, what, str(value), must, bool(is_ok)))
        return bool(is_ok)

    def table(self) -> str:
        rows = sorted(self.rows, key=lambda f: int(f.rid[1:]) if f.rid[1:].isdigit() else 99)
        head = ("id", "figure", "value", "must", "")
        body = [(f.rid, f.what, f.value, f.must, "ok" if f.is_ok else "FAIL") for f in rows]
        widths = [max(len(str(row[i])) for row in [head, *body]) for i in range(len(head))]
        lines = [
            " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in [head, *body]
        ]
        lines.insert(1, "-+-".join("-" * width for width in widths))
        return "\n".join(line.rstrip() for line in lines)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_KEY] = Figures(config.getoption("--reliability"))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = config.stash.get(_KEY, None)
    if not figures or not figures.rows:
        return
    title = f"reliability figures ({figures.scale} scale)"
    terminalreporter.write_sep("=", title)
    terminalreporter.write_line(figures.table())
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.with_suffix(".md").write_text(f"# {title}\n\n```\n{figures.table()}\n```\n")
    REPORT.with_suffix(".json").write_text(
        json.dumps({"scale": figures.scale, "figures": [asdict(f) for f in figures.rows]}, indent=1)
    )
    terminalreporter.write_line(f"(written to {REPORT.with_suffix('.md').relative_to(REPO)})")


@pytest.fixture(scope="session")
def figures(pytestconfig: pytest.Config) -> Figures:
    return pytestconfig.stash[_KEY]


@pytest.fixture(scope="session")
def is_full(pytestconfig: pytest.Config) -> bool:
    """The issue's figures (True) or CI's bounded form."""
    return bool(pytestconfig.getoption("--reliability") == "full")


def scaled(full: int, bounded: int, is_full: bool) -> int:
    return full if is_full else bounded
