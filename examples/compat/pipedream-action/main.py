"""A Pipedream-style action: props in, a return value and exports out, a file stash in TMPDIR.

It keeps a counter in its stash: each call with the same stash_id sees the previous value.
"""

import json
import os
import pathlib

from hatchway import runtime as hw


@hw.run_action
def run(ctx: hw.Context) -> dict[str, object]:
    stash = pathlib.Path(os.environ["TMPDIR"])
    counter = stash / "counter.txt"
    count = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(count))
    greeting = f"{ctx.param('greeting', 'hello')}, {ctx.param('name', 'world')}"
    print(f"call {count}: {greeting}")
    hw.export("count", count)
    if ctx.param("fail") == "app":
        marker = stash / "executions.txt"
        marker.write_text(marker.read_text() + "x" if marker.exists() else "x")
        raise RuntimeError("boom")
    return {"greeting": greeting, "count": count, "props": json.loads(json.dumps(ctx.parameters))}


if __name__ == "__main__":
    hw.main()
