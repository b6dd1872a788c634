"""The spine end to end, in-process and against a real server: register, sync, run, read."""

from __future__ import annotations

import sys

from hatchway.client import Client

ECHO = {
    "name": "echo",
    "parameters": [{"name": "who", "required": True}],
    "sync_actions": ["hello"],
    "container_parameters": {
        "entry_point": [sys.executable, "-c"],
        "command": [
            "import json,os,sys\n"
            "d=os.environ['HATCHWAY_DATA_DIR']\n"
            "c=json.load(open(d+'/config.json'))\n"
            "print('to the log', file=sys.stderr)\n"
            "if c['action']=='run':\n"
            "    json.dump({'hi': c['parameters']['who']}, open(d+'/out/result.json','w'))\n"
            "else:\n"
            "    print(json.dumps({'sync': c['parameters']['who']}))\n"
        ],
    },
}


def test_register_sync_and_run(hw: Client) -> None:
    # Given an action with a sync action
    record = hw.register_action(ECHO)
    assert record["version"] == 1
    # When the sync action is called
    answer = hw.call_sync("echo", "hello", {"who": "a; $(rm -rf /) `x` 'q'"})
    # Then its stdout JSON is the answer and parameters arrived literally
    assert answer["ret"] == {"sync": "a; $(rm -rf /) `x` 'q'"}
    assert [e["msg"] for e in answer["os"]] == ["to the log"]
    # When the async run is started and awaited
    run = hw.start_run("echo", {"who": "w"})
    assert run["status"] == "ENQUEUED"
    final = hw.wait(run["id"], timeout=20)
    assert final["status"] == "SUCCESSFUL"
    assert final["ret"] == {"hi": "w"}
