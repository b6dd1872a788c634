"""Action specs the functional tests register."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

BEHAVE = str(Path(__file__).resolve().parents[1] / "actions" / "behave.py")
#: behave.py as a ``hatchway.runtime`` action (``hw.main()``), which may run warm
BEHAVE_HW = str(Path(__file__).resolve().parents[1] / "actions" / "behave_hw.py")
PARAMETERS = [
    {"name": "behaviour", "default": "ok"},
    {"name": "seconds"},
    {"name": "succeed_on"},
    {"name": "count"},
    {"name": "code"},
    {"name": "who"},
    {"name": "#secret"},
]


def behave(name: str = "behave", **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "parameters": PARAMETERS,
        "sync_actions": ["check", "testConnection"],
        "container_parameters": {"entry_point": [sys.executable], "command": [BEHAVE]},
    }
    spec.update(fields)
    return spec
