"""`hatchway aws bootstrap` and `hatchway serve --backend aws` as a developer runs them, on a moto server."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.awsmock import REGION, MotoServer
from tests.helpers import LiveServer, child_env

pytestmark = pytest.mark.aws


def hatchway(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hatchway", *args],
        env=child_env(home, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bootstrap_creates_the_resources_once_and_prints_their_variables(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    import boto3

    suffix = uuid.uuid4().hex[:8]
    env = {**moto_server.env(), "HATCHWAY_TABLE_NAME": f"t-{suffix}", "HATCHWAY_BUCKET": f"b-{suffix}"}
    first = hatchway(tmp_path, "aws", "bootstrap", "--key", f"alias/k-{suffix}", **env)
    assert first.returncode == 0, first.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in first.stdout.splitlines())
    assert exports == {
        "HATCHWAY_BACKEND": "aws",
        "HATCHWAY_TABLE_NAME": f"t-{suffix}",
        "HATCHWAY_KMS_KEY_ID": f"alias/k-{suffix}",
        "HATCHWAY_BUCKET": f"b-{suffix}",
    }
    assert "created table" in first.stderr and "created key" in first.stderr and "created bucket" in first.stderr
    session = boto3.session.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    table = session.client("dynamodb", endpoint_url=moto_server.url).describe_table(TableName=f"t-{suffix}")["Table"]
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {"gsi1", "gsi2"}
    ttl = session.client("dynamodb", endpoint_url=moto_server.url).describe_time_to_live(TableName=f"t-{suffix}")
    assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiration"}
    kms = session.client("kms", endpoint_url=moto_server.url)
    assert kms.describe_key(KeyId=f"alias/k-{suffix}")["KeyMetadata"]["KeyState"] == "Enabled"
    # a second run changes nothing
    again = hatchway(tmp_path, "aws", "bootstrap", "--key", f"alias/k-{suffix}", **env)
    assert again.returncode == 0 and "everything existed already" in again.stderr
    assert dict(line.removeprefix("export ").split("=", 1) for line in again.stdout.splitlines()) == exports


def test_bootstrap_without_a_reachable_aws_fails_in_one_line(tmp_path: Path) -> None:
    failed = hatchway(
        tmp_path,
        "aws",
        "bootstrap",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION=REGION,
        AWS_MAX_ATTEMPTS="1",
    )
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr and "unavailable" in failed.stderr


def test_serve_with_the_aws_backend_keeps_runs_across_a_restart(moto_server: MotoServer, tmp_path: Path) -> None:
    from tests.conftest import aws_server_env

    env: dict[str, Any] = aws_server_env(moto_server, tmp_path / "home")
    env.pop("HATCHWAY_BACKEND")  # the flag chooses the backend here
    # Given a gateway on DynamoDB + KMS with no worker, a run waits in the queue
    server = LiveServer(tmp_path / "home", "--backend", "aws", "--workers", "0", **env).start()
    try:
        with server.client() as hw:
            hw.register_action(
                {
                    "name": "greet",
                    "parameters": [{"name": "#who"}],
                    "container_parameters": {
                        "entry_point": [sys.executable, "-c"],
                        "command": [
                            "import json,os; d=os.environ['HATCHWAY_DATA_DIR']; c=json.load(open(d+'/config.json'));"
                            "json.dump({'hi': len(c['parameters']['#who'])}, open(d+'/out/result.json','w'))"
                        ],
                    },
                }
            )
            run = hw.start_run("greet", {"#who": "top-secret-name"})
            assert run["parameters"] == {"#who": "[hidden]"}
    finally:
        server.kill()
    assert "top-secret-name" not in server.log()
    # When a gateway with workers starts on the same table
    restarted = LiveServer(tmp_path / "home2", "--backend", "aws", **env).start()
    try:
        with restarted.client() as hw:
            # Then it finds the run and runs it, decrypting the secret with KMS
            final = hw.wait(run["id"], timeout=30)
            assert final["status"] == "SUCCESSFUL" and final["ret"] == {"hi": len("top-secret-name")}
    finally:
        restarted.kill()


def test_teardown_lists_on_dry_run_asks_without_yes_and_removes_with_it(
    moto_server: MotoServer, tmp_path: Path
) -> None:
    import boto3

    prefix = f"hw{uuid.uuid4().hex[:8]}"
    session = boto3.session.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    lam = session.client("lambda", endpoint_url=moto_server.url)
    role = session.client("iam", endpoint_url=moto_server.url).create_role(
        RoleName=f"{prefix}-fn", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    # Given a function registration made under the prefix (tagged), and one of the stack's own
    for name, tags in ((f"{prefix}-act-echo-0123", {"hatchway:project": "proj_local"}), (f"{prefix}-api", {})):
        lam.create_function(
            FunctionName=name, PackageType="Image", Code={"ImageUri": "repo/echo:1"}, Role=role, Tags=tags
        )
    env = {**moto_server.env(), "HATCHWAY_RESOURCE_PREFIX": prefix}
    # When a dry run lists it
    dry = hatchway(tmp_path, "aws", "teardown", "--dry-run", **env)
    assert dry.returncode == 0, dry.stderr
    assert f"would remove Lambda function {prefix}-act-echo-0123" in dry.stderr and f"{prefix}-api" not in dry.stderr
    # And without --yes (no terminal) nothing goes
    asked = hatchway(tmp_path, "aws", "teardown", **env)
    assert asked.returncode == 1 and "give --yes" in asked.stderr
    assert len(lam.list_functions()["Functions"]) >= 2
    # Then --yes removes it, and only it
    done = hatchway(tmp_path, "aws", "teardown", "--yes", **env)
    assert done.returncode == 0, done.stderr
    assert f"removed Lambda function {prefix}-act-echo-0123" in done.stdout
    names = {f["FunctionName"] for f in lam.list_functions()["Functions"]}
    assert f"{prefix}-api" in names and f"{prefix}-act-echo-0123" not in names
    again = hatchway(tmp_path, "aws", "teardown", "--yes", **env)
    assert again.returncode == 0 and "nothing made at run time" in again.stderr


def test_migrate_lists_and_claims_projects_written_by_an_older_version(moto_server: MotoServer, tmp_path: Path) -> None:
    import boto3

    suffix = uuid.uuid4().hex[:8]
    env = {**moto_server.env(), "HATCHWAY_TABLE_NAME": f"t-{suffix}", "HATCHWAY_BUCKET": f"b-{suffix}"}
    assert hatchway(tmp_path, "aws", "bootstrap", "--key", f"alias/k-{suffix}", **env).returncode == 0
    session = boto3.session.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    db = session.client("dynamodb", endpoint_url=moto_server.url)
    # Given a project item as an older version wrote it: no gsi1 keys, no name claim
    old = {"pk": {"S": "PROJECT#proj_legacy"}, "sk": {"S": "P"}, "name": {"S": "legacy"}, "created_at": {"N": "1"}}
    db.put_item(TableName=f"t-{suffix}", Item=old)

    def listed() -> list[str]:
        found = db.query(
            TableName=f"t-{suffix}", IndexName="gsi1", KeyConditionExpression="gsi1pk = :p",
            ExpressionAttributeValues={":p": {"S": "PROJECTS"}},
        )  # fmt: skip
        return [item["gsi1sk"]["S"] for item in found["Items"]]

    assert listed() == []
    # When `hatchway aws migrate` runs
    done = hatchway(tmp_path, "aws", "migrate", **env)
    # Then it says what it changed, the project is on the index GET /v1/projects reads, its name claimed
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "listed project proj_legacy (GET /v1/projects)",
        "claimed the name of project proj_legacy",
    ]
    assert listed() == ["proj_legacy"]
    claim = db.get_item(TableName=f"t-{suffix}", Key={"pk": {"S": "PROJECTNAME#legacy"}, "sk": {"S": "N"}})
    assert claim["Item"]["project_id"] == {"S": "proj_legacy"}
    # and a second run has nothing to do
    again = hatchway(tmp_path, "aws", "migrate", **env)
    assert again.returncode == 0 and again.stdout.strip() == f"table t-{suffix} at {moto_server.url} is up to date"
