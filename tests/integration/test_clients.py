"""Callers written for Pipedream Connect work against hatchway unchanged: the real `pipedream` Python
SDK from PyPI and the real `@pipedream/sdk` from npm, against a real `hatchway serve`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAST
from tests.functional.test_parity import example
from tests.helpers import LiveServer

pytestmark = pytest.mark.integration
NPM_CACHE = Path(os.environ.get("HATCHWAY_TEST_NPM_DIR", Path.home() / ".cache" / "hatchway-tests" / "npm"))


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str, str]]:
    """A server with the Pipedream-style example, and a project token (its id and value)."""
    server = LiveServer(tmp_path_factory.mktemp("connect"), **FAST).start()
    with server.client() as admin:
        admin.register_action(example("pipedream-action"))
        token = admin.create_token(["runs:read", "runs:write"], name="connect")
    yield server, token["id"], token["token"]
    server.kill()


def runs_of(server: LiveServer, user: str) -> list[dict[str, object]]:
    with server.client() as admin:
        items: list[dict[str, object]] = admin.list_runs(external_user_id=user)["items"]
        return items


def test_python_sdk_runs_an_action_with_a_stash(connect_server: tuple[LiveServer, str, str]) -> None:
    from pipedream import Pipedream

    server, _, token = connect_server
    pd = Pipedream(access_token=token, project_id="proj_local", project_environment="development", base_url=server.url)
    first = pd.actions.run(id="greet-user", external_user_id="py-1", configured_props={"name": "ada"}, stash_id="NEW")
    assert first.ret == {"greeting": "hello, ada", "count": 1, "props": {"name": "ada", "greeting": "hello"}}
    assert first.exports == {"count": 1}
    assert first.os and first.os[0].msg == "call 1: hello, ada" and isinstance(first.os[0].ts, int | float)
    assert first.stash_id and first.stash_id.startswith("stash_")
    second = pd.actions.run(id="greet-user", external_user_id="py-1", stash_id=first.stash_id)
    assert second.ret["count"] == 2 and second.stash_id == first.stash_id
    assert len(runs_of(server, "py-1")) == 2


def test_python_sdk_with_client_credentials(connect_server: tuple[LiveServer, str, str]) -> None:
    from pipedream import Pipedream

    server, token_id, token = connect_server
    pd = Pipedream(
        client_id=token_id, client_secret=token, project_id="proj_local", project_environment="development",
        base_url=server.url,
    )  # fmt: skip
    result = pd.actions.run(id="greet-user", external_user_id="py-cc", configured_props={"greeting": "hi"})
    assert result.ret["greeting"] == "hi, world"


def test_sdk_retries_never_run_the_action_twice(connect_server: tuple[LiveServer, str, str]) -> None:
    from pipedream import Pipedream
    from pipedream.core.api_error import ApiError

    server, _, token = connect_server
    pd = Pipedream(access_token=token, project_id="proj_local", project_environment="development", base_url=server.url)
    # Given an action that fails with an application error (HTTP 500: the SDK retries twice)
    with pytest.raises(ApiError) as caught:
        pd.actions.run(id="greet-user", external_user_id="py-retry", configured_props={"fail": "app"})
    assert caught.value.status_code == 500
    # Then the action ran exactly once; the retries were answered from the first answer
    assert len(runs_of(server, "py-retry")) == 1


@pytest.fixture(scope="module")
def js_sdk() -> Path:
    """`@pipedream/sdk` from the npm registry, installed once into a cache directory."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("node and npm are needed for the JavaScript SDK test")
    package = NPM_CACHE / "node_modules" / "@pipedream" / "sdk" / "package.json"
    if not package.exists():
        NPM_CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(NPM_CACHE), "@pipedream/sdk@3"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"npm could not install @pipedream/sdk: {done.stderr[-300:]}")
    return NPM_CACHE


JS_CLIENT = """
const { PipedreamClient } = require("@pipedream/sdk");
(async () => {
  const client = new PipedreamClient({
    clientId: process.env.CLIENT_ID, clientSecret: process.env.CLIENT_SECRET,
    projectId: "proj_local", projectEnvironment: "development", baseUrl: process.env.BASE_URL,
  });
  const first = await client.actions.run({ id: "greet-user", externalUserId: "js-1",
    configuredProps: { name: "grace" }, stashId: "NEW" });
  const second = await client.actions.run({ id: "greet-user", externalUserId: "js-1", stashId: first.stashId });
  console.log(JSON.stringify({ first, second }));
})().catch((err) => { console.error(err); process.exit(1); });
"""


def test_javascript_sdk_runs_an_action(connect_server: tuple[LiveServer, str, str], js_sdk: Path) -> None:
    server, token_id, token = connect_server
    env = {**os.environ, "NODE_PATH": str(js_sdk / "node_modules"), "BASE_URL": server.url,
           "CLIENT_ID": token_id, "CLIENT_SECRET": token}  # fmt: skip
    done = subprocess.run(["node", "-e", JS_CLIENT], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["first"]["ret"]["greeting"] == "hello, grace" and answer["first"]["exports"] == {"count": 1}
    assert answer["second"]["ret"]["count"] == 2 and answer["second"]["stashId"] == answer["first"]["stashId"]
