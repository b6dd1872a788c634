"""The profile file ``hatchway login`` writes: gateway URLs and their tokens, as gh and wmill keep them.

It lives at ``$XDG_CONFIG_HOME/hatchway/config.json`` (``~/.config/hatchway/config.json``), mode
0600 in a 0700 directory, and holds one entry per gateway URL and which one is current::

    {"current": "https://gw.example.com",
     "gateways": {"https://gw.example.com": {"token": "hw_…", "project": "proj_…"}}}

A token is only ever sent to the URL it was stored for. Options and ``HATCHWAY_*`` variables win
over the file; the file wins over ``$HATCHWAY_HOME/token`` (the local gateway's own token).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

TYPE_CHECKING = False  # `import typing` costs ~4 ms of start-up; mypy treats this name as True
if TYPE_CHECKING:
    from typing import Any


def path() -> Path:
    """Where the profile file is."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path("~/.config").expanduser()
    return Path(base) / "hatchway" / "config.json"


def load() -> dict[str, Any]:
    """The profile (empty when there is none or it cannot be read)."""
    try:
        with path().open(encoding="utf-8") as file:
            document = json.load(file)
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def gateway(url: str | None) -> tuple[str | None, dict[str, Any]]:
    """The URL to use (``url``, else the current one) and what is stored for it."""
    document = load()
    chosen = (url or document.get("current") or "").rstrip("/") or None
    entry = document.get("gateways", {}).get(chosen) if chosen else None
    return chosen, entry if isinstance(entry, dict) else {}


def save(url: str, token: str, project: str | None) -> Path:
    """Store ``token`` for ``url`` and make it current; the file's path."""
    document = load()
    entries = document.setdefault("gateways", {})
    entries[url] = {"token": token, **({"project": project} if project else {})}
    document["current"] = url
    _write(document)
    return path()


def forget(url: str | None) -> str | None:
    """Remove ``url`` (default: the current one); the URL removed, or None if none was stored."""
    document = load()
    chosen = (url or document.get("current") or "").rstrip("/")
    if chosen not in document.get("gateways", {}):
        return None
    del document["gateways"][chosen]
    if document.get("current") == chosen:
        document["current"] = next(iter(document["gateways"]), None)
    _write(document)
    return chosen


def _write(document: dict[str, Any]) -> None:
    target = path()
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    # created 0600 before the token is written, then renamed over the old file in one step
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2)
        file.write("\n")
    temporary.chmod(0o600)
    temporary.replace(target)
