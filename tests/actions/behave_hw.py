"""behave.py as an action written with ``hatchway.runtime``: ``hw.main()`` runs each call, cold or
as a fork of a warm server (``"warm": true``); the handler runs behave.py's code for the call."""

import runpy
import sys
import traceback
from pathlib import Path

from hatchway import runtime as hw

BEHAVE = str(Path(__file__).resolve().parent / "behave.py")


@hw.sync_action("check")
@hw.sync_action("testConnection")
@hw.run_action
def behave(ctx: hw.Context) -> None:
    try:
        runpy.run_path(BEHAVE, run_name="__behave__")
    except Exception:  # as the interpreter ends the script behave.py is: traceback, exit code 1
        traceback.print_exc()
        sys.exit(1)
    sys.exit(0)  # behave.py answered itself: no second document from hw.main()


if __name__ == "__main__":
    hw.main()
