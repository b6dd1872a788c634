"""The reliability suite's action (standard library only, like any action).

Its ``behaviour`` parameter says what to do. ``work`` appends one line per execution to a ledger
file (``O_APPEND``: lines from concurrent processes never interleave), so the suite can count how
often each run was really executed, independently of what the gateway recorded.
"""

import json
import os
import sys
import time

data_dir = os.environ["HATCHWAY_DATA_DIR"]
with open(os.path.join(data_dir, "config.json")) as handle:
    config = json.load(handle)
params = config["parameters"]
run = config["run"]
behaviour = params.get("behaviour", "work")


def result(value: object) -> None:
    if config["action"] == "run":
        with open(os.path.join(data_dir, "out", "result.json"), "w") as out:
            json.dump(value, out)
    else:
        print(json.dumps(value))


def ledger(event: str) -> None:
    line = f"{run['id']} {run['attempt']} {event} {os.getpid()} {time.time():.3f}\n".encode()
    fd = os.open(params["ledger"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


if behaviour == "work":
    # a short piece of work; the ledger line is its one external effect
    time.sleep(float(params.get("seconds") or 0))
    ledger("done")
    result({"run": run["id"], "attempt": run["attempt"]})
elif behaviour == "long":
    ledger("start")
    time.sleep(float(params["seconds"]))
    ledger("done")
    result({"attempt": run["attempt"]})
elif behaviour == "poison":
    print(f"attempt {run['attempt']} at {time.time():.3f}", file=sys.stderr, flush=True)
    sys.exit(2)
elif behaviour == "user_error":
    print("the input is wrong", file=sys.stderr)
    sys.exit(1)
elif behaviour == "flood":
    # a lot of output as fast as the pipe takes it: lines of `width` bytes up to `bytes` in total
    width = int(params.get("width") or 1000)
    line = (b"x" * (width - 1)) + b"\n"
    chunk = line * max(1, 65536 // width)
    left = int(params["bytes"])
    out = sys.stdout.buffer
    while left > 0:
        piece = chunk[:left]
        out.write(piece)
        left -= len(piece)
    out.flush()
    result({"written": int(params["bytes"])})
elif behaviour == "rate":
    # `rate` numbered lines per second for `seconds`, paced in 10 ms slices
    rate, seconds = int(params["rate"]), float(params["seconds"])
    total = int(rate * seconds)
    start = time.monotonic()
    written = 0
    while written < total:
        due = min(total, int((time.monotonic() - start) * rate) + rate // 100)
        while written < due:
            sys.stdout.write(f"line {written} of {total}\n")
            written += 1
        sys.stdout.flush()
        time.sleep(0.01)
    if run["attempt"] == 1:
        time.sleep(float(params.get("linger") or 0))  # quiet afterwards: a closed pipe would not stop it
    result({"lines": total, "seconds": round(time.monotonic() - start, 3)})
elif behaviour == "sync_sleep":
    time.sleep(float(params.get("seconds") or 0))
    result({"slept": params.get("seconds")})
else:
    print(f"unknown behaviour {behaviour}", file=sys.stderr)
    sys.exit(2)
