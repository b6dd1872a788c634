"""Opaque pagination cursors, bound to the list and the tenant they were made for.

A cursor is the position of the last item of a page (a name, an id, a version) with the scope of
its list (kind, project, environment, filters). Every repository's listing encodes and decodes
through here, so a cursor made for one list or tenant is refused by every other, on every backend.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from hatchway.errors import ValidationFailed


def encode_cursor(scope: tuple[str, ...], position: str | int) -> str:
    raw = json.dumps([list(scope), position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, scope: tuple[str, ...]) -> Any:
    """The position inside a cursor; a cursor made for another list or tenant is refused."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, position = json.loads(raw)
    except (ValueError, binascii.Error, TypeError):
        raise ValidationFailed.at(["query", "cursor"], "not a cursor this API issued") from None
    if made_for != list(scope) or not isinstance(position, str | int):
        raise ValidationFailed.at(["query", "cursor"], "this cursor belongs to another list")
    return position
