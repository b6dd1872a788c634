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
elif behaviour == "traceback":
    print("reading the input", file=sys.stderr, flush=True)
    raise ValueError("the input has no column 'id'")
elif behaviour == "kill_self":
    os.kill(os.getpid(), 9)
elif behaviour == "stubborn_tree":
    # a shell that ignores SIGTERM (its sleeps inherit that), each sleep a grandchild of the action
    seconds = params["seconds"]
    os.execvp("sh", ["sh", "-c", f"trap '' TERM; sleep {seconds} & sleep {seconds} & wait"])  # noqa: S606
elif behaviour == "big_stdout":
    sys.stdout.write("x" * int(params["count"]))
    sys.stdout.flush()
elif behaviour == "flood":
    line = "y" * 1023
    for _ in range(int(params["count"])):
        print(line)
    answer({"flooded": int(params["count"])})
elif behaviour == "secret_everywhere":
    secret = params["#secret"]
    forms = [secret, base64.b64encode(secret.encode()).decode(), json.dumps(secret)[1:-1], quote(secret, safe="")]
    for form in forms:
        if action == "run":  # a sync action's stdout is its answer
            print(f"stdout {form}", flush=True)
        print(f"stderr {form}", file=sys.stderr, flush=True)
    if params.get("code") == "1":
        sys.exit(1)
    if action == "run":
        answer({"forms": forms})
        with open(os.path.join(data_dir, "out", "exports.json"), "w") as out:
            json.dump({"forms": forms}, out)
    else:
        print(json.dumps({"forms": forms}))
elif behaviour == "config":
    answer(
        {
            "keys": sorted(config),
            "secret_matches": params.get("#secret") == params.get("who") + "-secret-value",
            "behaviour": params.get("behaviour"),
            "run": sorted(config.get("run") or {}),
            "data_dir": data_dir,
            "config_file": os.path.join(data_dir, "config.json"),
        }
    )
elif behaviour == "exports_list":
    answer({"ok": True})
    with open(os.path.join(data_dir, "out", "exports.json"), "w") as out:
        json.dump(["not", "an", "object"], out)
elif behaviour == "silent":
    pass
elif behaviour == "allocate":
    hoard = [bytearray(16 * 1024 * 1024) for _ in range(int(params["count"]))]
    answer({"allocated_mib": 16 * len(hoard)})
else:
    print(f"unknown behaviour {behaviour}", file=sys.stderr)
    sys.exit(2)
