"""How the command line prints: tables, JSON and YAML on stdout, one error line on stderr.

Text that comes from a gateway (messages, parameter values, log lines, step reasons) is printed as
sent: nothing here goes through Rich markup, where ``[run run_…]`` or ``'[hidden]'`` would vanish
and ``[/end]`` would raise. Terminal escapes and other control characters in such text are dropped,
since a server's text must not drive the user's terminal. Tables never cut a key column (ids):
on a terminal the other columns give way; piped, nothing is cut at all.
"""

from __future__ import annotations

import re
import sys

from hatchway.cli._table import _columns

TYPE_CHECKING = False  # `import typing` costs ~4 ms of start-up; mypy treats this name as True
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, NoReturn

FORMATS = ("table", "json", "yaml")
# CSI/OSC escape sequences, then every other C0 control but newline and tab, and DEL (compiled when
# first needed: not every command prints server text, and `hatchway --help` prints none)
_ESCAPES = r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|[\x00-\x08\x0b-\x1f\x7f]"


def output_format(value: str) -> str:
    """The value of ``-o/--output``."""
    import argparse

    if value not in FORMATS:
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(FORMATS)}")
    return value


def chosen(output: str | None, as_json: bool, default: str = "table") -> str:
    """The format asked for: ``--json`` (kept as an alias) is ``-o json``; else the command's default."""
    return "json" if as_json else output or default


def clean(text: Any) -> str:
    """Server text as it can be shown: escapes and control characters (not newlines, tabs) dropped."""
    return re.sub(_ESCAPES, "", str(text))  # re caches the compiled pattern


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: <message>`` on stderr, literally, and exit with ``code``."""
    prefix = "\033[31merror:\033[0m" if _is_tty(sys.stderr) else "error:"
    sys.stderr.write(f"{prefix} {clean(message)}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def plain(data: Any) -> Any:
    """``data`` as JSON types (the client's models dumped as the API sent them)."""
    from hatchway.client.models import as_json

    return as_json(data)


def print_data(data: Any, fmt: str = "json") -> None:
    """``data`` as JSON (coloured on a terminal) or YAML."""
    data = plain(data)
    if fmt == "yaml":
        import yaml

        _write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip("\n"))
        return
    import json

    text = json.dumps(data, indent=2, ensure_ascii=False)
    if _is_tty(sys.stdout):
        from rich.console import Console

        Console().print_json(text)  # a JSON renderable: highlighted, never read as markup
        return
    _write(text)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, keep: Sequence[int] = (0,)) -> None:
    """Aligned columns under upper-case headers; the columns numbered in ``keep`` (ids) are never cut.

    On a terminal narrower than the table the other columns are cut (with ``…``), widest first;
    piped, every cell is printed whole so that the next command can use it.
    """
    cells = [[" ".join(clean("" if cell is None else cell).split()) for cell in row] for row in rows]
    titles = [header.upper() for header in headers]
    widths = [max([len(title), *(len(row[i]) for row in cells)]) for i, title in enumerate(titles)]
    if _is_tty(sys.stdout):
        widths = _fit(widths, titles, keep, _columns())
    for row in [titles, *cells]:
        line = "  ".join(_cut(cell, width).ljust(width) for cell, width in zip(row, widths, strict=True))
        _write(line.rstrip())


def print_fields(record: dict[str, Any]) -> None:
    """One object as ``field  value`` lines (``-o table`` of a command that shows one thing)."""
    import json

    rows = [
        [key, value if isinstance(value, str) else json.dumps(plain(value))] for key, value in plain(record).items()
    ]
    print_table(["field", "value"], rows)


def _fit(widths: list[int], titles: list[str], keep: Sequence[int], room: int) -> list[int]:
    """Narrow the columns not kept, widest first a character at a time, until the row fits in ``room``
    (or every such column is down to its title, at least 6 characters)."""
    widths = list(widths)
    excess = sum(widths) + 2 * (len(widths) - 1) - room
    floors = [max(len(title), 6) for title in titles]
    while excess > 0:
        shrinkable = [i for i in range(len(widths)) if i not in keep and widths[i] > floors[i]]
        if not shrinkable:
            break
        widths[max(shrinkable, key=lambda i: widths[i])] -= 1
        excess -= 1
    return widths


def age(timestamp: str | None, now: float | None = None) -> str:
    """How long ago an ISO 8601 time was, as kubectl shows it: ``42s``, ``5m``, ``3h``, ``2d``."""
    if not timestamp:
        return ""
    import time
    from datetime import datetime

    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return timestamp
    seconds = max(0, int((time.time() if now is None else now) - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _cut(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: max(width - 1, 0)] + "…"


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
