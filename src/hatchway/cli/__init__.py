"""The ``hatchway`` command line: serve the gateway, run workers, and talk to a gateway's API.

Commands are declared in :mod:`hatchway.cli._table`'s table and parsed with argparse; the root and
its groups are in :mod:`hatchway.cli._common`, and each command module below fills its part of them
when imported. Heavy modules (the server, uvicorn, httpx, rich, the service) are imported inside the
commands that need them, so ``hatchway --help`` stays quick. The server URL and token come from
``--url``/``--token``, then ``HATCHWAY_URL``/``HATCHWAY_TOKEN``, then ``$HATCHWAY_HOME/token``.
"""

from __future__ import annotations

# The command modules are imported for their declarations, `serve` first: the top level lists its
# commands (serve, worker, init) before those of `actions` (run, sync, encrypt).
from hatchway.cli import serve  # noqa: F401
from hatchway.cli._common import app

# isort: split
from hatchway.cli import actions, aws, login, pipelines, projects, runs  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    """The ``hatchway`` console script (and ``python -m hatchway``); a fault of the command line itself
    is one error line too, never a traceback."""
    try:
        app.main(argv)
    except Exception as err:
        from hatchway.cli._output import fail

        fail(f"unexpected {type(err).__name__}: {err} (a bug in hatchway: please report it with the command)")


if __name__ == "__main__":
    main()
