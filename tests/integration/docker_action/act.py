"""The container tier's test action: behaves as its `mode` parameter says."""

import json
import os
import signal
import socket
import sys
import time

data = os.environ["HATCHWAY_DATA_DIR"]
with open(os.path.join(data, "config.json")) as handle:
    config = json.load(handle)
params = config["parameters"]
mode = params.get("mode", "ok")
facts = {
    "action": config["action"],
    "who": params.get("who"),
    "uid": os.getuid(),
    "interfaces": sorted(os.listdir("/sys/class/net")),
    "cwd": os.getcwd(),
    "host": socket.gethostname(),
    "env": os.environ.get("GREETING"),
    "data_dir": data,
}
print("to the log", file=sys.stderr, flush=True)
if mode == "user":
    print("the table 'x' does not exist", file=sys.stderr)
    sys.exit(1)
if mode == "app":
    sys.exit(3)
if mode == "badjson":
    print("this is not JSON")
    sys.exit(0)
if mode == "sleep":
    print("sleeping", file=sys.stderr, flush=True)
    time.sleep(float(params.get("seconds", "60")))
if mode == "oom":
    hog = []
    while True:
        hog.append(b"\x01" * (32 << 20))
if mode == "crash":
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(5)
if config["action"] == "run":
    for i in range(3):
        print(f"line {i}", flush=True)
    with open(os.path.join(data, "out", "result.json"), "w") as handle:
        json.dump(facts, handle)
    with open(os.path.join(data, "out", "exports.json"), "w") as handle:
        json.dump({"rows": 42}, handle)
else:
    print(json.dumps(facts))
