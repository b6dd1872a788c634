"""Helpers for action authors: the container contract from inside the action.

Standard library only - this package is installed into action images. An action reads its
``config.json`` through :func:`context`, returns or sets its result, exports values, and signals a
user error by raising :class:`UserError` (exit code 1, the message goes to the user)::

    from hatchway import runtime as hw

    @hw.sync_action("test-connection")
    def test_connection(ctx):
        return {"ok": True}

    @hw.run_action
    def run(ctx):
        hw.export("rows", 42)
        return {"tables": 3}

    if __name__ == "__main__":
        hw.main()

A handler's return value becomes the answer: printed as the one JSON document on stdout for a
sync action, written to ``out/result.json`` for a run. Any other exception is an application
error (exit code 2, the traceback stays in the log).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "Context",
    "UserError",
    "context",
    "export",
    "main",
    "run_action",
    "set_result",
    "sync_action",
]

RUN = "run"
Handler = Callable[["Context"], Any]
F = TypeVar("F", bound=Handler)


class UserError(Exception):
    """Something the user can fix (bad parameter, wrong credentials): exit code 1, message shown."""


class Context:
    """What the gateway handed this invocation."""

    def __init__(self, data_dir: Path, config: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self.out_dir = data_dir / "out"
        self.config = config
        self.action: str = config.get("action", RUN)
        self.parameters: dict[str, Any] = config.get("parameters") or {}
        self.run: dict[str, Any] = config.get("run") or {}

    @property
    def is_sync(self) -> bool:
        return self.action != RUN

    def param(self, name: str, default: Any = None, type: Callable[[str], Any] = str) -> Any:  # noqa: A002
        """A parameter converted with ``type``; a value that does not convert is a user error."""
        raw = self.parameters.get(name)
        if raw is None:
            return default
        try:
            return type(raw)
        except (TypeError, ValueError):
            raise UserError(f"parameter {name!r} must be a {getattr(type, '__name__', 'valid value')}") from None

    def require(self, name: str, type: Callable[[str], Any] = str) -> Any:  # noqa: A002
        """Like :meth:`param`, but a missing value is a user error."""
        value = self.param(name, None, type)
        if value is None:
            raise UserError(f"parameter {name!r} is required")
        return value


_context: Context | None = None


def context() -> Context:
    """The invocation's context, read once from ``$HATCHWAY_DATA_DIR/config.json``."""
    global _context
    if _context is None:
        data_dir = os.environ.get("HATCHWAY_DATA_DIR")
        if not data_dir:
            raise RuntimeError("HATCHWAY_DATA_DIR is not set: this code runs inside a hatchway action")
        path = Path(data_dir)
        with (path / "config.json").open(encoding="utf-8") as handle:
            _context = Context(path, json.load(handle))
    return _context


def _write_json(name: str, value: Any) -> None:
    ctx = context()
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    target = ctx.out_dir / name
    temporary = target.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(value, handle, ensure_ascii=False)
    temporary.replace(target)


_exports: dict[str, Any] = {}


def export(key: str, value: Any) -> None:
    """Export a named value (it appears in the run's ``exports``)."""
    _exports[key] = value
    _write_json("exports.json", _exports)


def set_result(value: Any) -> None:
    """Set the answer: stdout JSON for a sync action, ``out/result.json`` for a run."""
    if context().is_sync:
        sys.stdout.write(json.dumps(value, ensure_ascii=False))
        sys.stdout.write("\n")
        sys.stdout.flush()
    else:
        _write_json("result.json", value)


_handlers: dict[str, Handler] = {}


def sync_action(name: str) -> Callable[[F], F]:
    """Register a handler for a sync action declared in ``action.json``."""

    def register(fn: F) -> F:
        _handlers[name] = fn
        return fn

    return register


def run_action(fn: F) -> F:
    """Register the handler of the asynchronous ``run`` action."""
    _handlers[RUN] = fn
    return fn


def main(handlers: dict[str, Handler] | None = None) -> None:
    """Dispatch to the handler of the invoked action and exit by the contract's codes.

    Started as a warm server (``"warm": true`` in ``action.json``, on a gateway that keeps them),
    it serves calls instead, each in a fork of this process that does the same
    (:mod:`hatchway.runtime.warm`); elsewhere - cold, in Docker, on AWS - it runs the one call.
    """
    table = {**_handlers, **(handlers or {})}
    if os.environ.get("HATCHWAY_WARM_FD"):  # (warm.WARM_FD; its module is imported only when warm)
        from hatchway.runtime import warm

        warm.serve(lambda: _exit_code(table))
    _dispatch(table)


def _dispatch(table: dict[str, Handler]) -> None:
    try:
        ctx = context()
        handler = table.get(ctx.action)
        if handler is None:
            print(f"this action has no handler for {ctx.action!r}", file=sys.stderr)
            sys.exit(2)
        result = handler(ctx)
        if result is not None or ctx.is_sync:
            set_result(result)
    except UserError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(1)
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        sys.exit(2)
    sys.exit(0)


def _exit_code(table: dict[str, Handler]) -> int:
    """:func:`_dispatch` as an exit code, the way the interpreter turns a ``SystemExit`` into one."""
    try:
        _dispatch(table)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code & 0xFF
        print(code, file=sys.stderr)
        return 1
    return 0
