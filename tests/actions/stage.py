"""A pipeline stage for the tests (stdlib only): echoes, exports, fails, sleeps as its parameters say."""

import json
import os
import sys
import time

data_dir = os.environ["HATCHWAY_DATA_DIR"]
with open(os.path.join(data_dir, "config.json")) as handle:
    config = json.load(handle)
params = config["parameters"]
value = params.get("value", "")
mode = params.get("mode", "ok")
token = params.get("#token")

print(f"stage {value} attempt {config['run']['attempt']}", file=sys.stderr, flush=True)
if token is not None:
    print(f"the token is {token}", flush=True)
if mode == "sleep":
    time.sleep(float(params.get("seconds", "1")))
elif mode == "fail":
    print(f"stage {value} failed on purpose", file=sys.stderr)
    sys.exit(1)
elif mode == "crash" or (mode == "crash_until" and config["run"]["attempt"] < int(params.get("seconds", "2"))):
    sys.exit(3)  # an application error (retried), unlike exit 1

result = {"value": value, "upper": value.upper(), "items": [value, value * 2], "token_length": len(token or "")}
if config["action"] == "run":
    with open(os.path.join(data_dir, "out", "result.json"), "w") as out:
        json.dump(result, out)
    with open(os.path.join(data_dir, "out", "exports.json"), "w") as out:
        json.dump({"value": value + "!", "length": len(value)}, out)
else:
    print(json.dumps(result))
