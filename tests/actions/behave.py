"""A test action that behaves as its `behaviour` parameter says (stdlib only, like any action)."""

import base64
import json
import os
import sys
import time
from urllib.parse import quote

data_dir = os.environ["HATCHWAY_DATA_DIR"]
with open(os.path.join(data_dir, "config.json")) as handle:
    config = json.load(handle)
params = config["parameters"]
action = config["action"]
behaviour = params.get("behaviour", "ok")


def answer(value: object) -> None:
    if action == "run":
        with open(os.path.join(data_dir, "out", "result.json"), "w") as out:
            json.dump(value, out)
        with open(os.path.join(data_dir, "out", "exports.json"), "w") as out:
            json.dump({"attempt": config["run"]["attempt"], "action": action}, out)
    else:
        print(json.dumps(value))


print(f"starting {action}", file=sys.stderr, flush=True)
if behaviour == "ok":
    if action == "run":
        print("working on it", flush=True)
    answer({"echo": params, "cwd_is_data_dir": os.getcwd() == data_dir, "env_has_params": "who" in os.environ})
elif behaviour == "user_error":
    print("the database password is wrong", file=sys.stderr)
    sys.exit(1)
elif behaviour == "app_error":
    print("internal detail at /srv/secret/path.py", file=sys.stderr)
    sys.exit(3)
elif behaviour == "invalid_json":
    print("this is not json")
elif behaviour == "sleep":
    time.sleep(float(params["seconds"]))
    answer({"slept": params["seconds"]})
elif behaviour == "sleep_tree":
    os.execvp("sh", ["sh", "-c", f"sleep {params['seconds']} & sleep {params['seconds']} & wait"])  # noqa: S606
elif behaviour == "fail_until":
    if config["run"]["attempt"] < int(params["succeed_on"]):
        print(f"attempt {config['run']['attempt']} fails", file=sys.stderr)
        sys.exit(2)
    answer({"succeeded_on": config["run"]["attempt"]})
elif behaviour == "print_secret":
    secret = params["#secret"]
    log = sys.stdout if action == "run" else sys.stderr  # a sync action's stdout is its answer
    print(f"raw {secret}", file=log)
    print("b64 " + base64.b64encode(secret.encode()).decode(), file=log)
    print("json " + json.dumps({"s": secret}), file=log)
    print("url " + quote(secret, safe=""), file=log)
    log.write("split " + secret[:3])
    log.flush()
    time.sleep(0.05)
    log.write(secret[3:] + " done\n")
    log.flush()
    print(f"stderr {secret}", file=sys.stderr)
    answer({"secret": secret, "nested": [secret]})
elif behaviour == "lines":
    for index in range(int(params["count"])):
        print(f"line {index}")
    answer({"lines": int(params["count"])})
elif behaviour == "exit":
    sys.exit(int(params["code"]))
elif behaviour == "env":
    answer({"env": sorted(os.environ)})
else:
    print(f"unknown behaviour {behaviour}", file=sys.stderr)
    sys.exit(2)
