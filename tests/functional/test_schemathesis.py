"""Property-based checks of the published OpenAPI document against a real server (schemathesis).

Every operation, authenticated with the admin token: no 5xx, status codes, content types and bodies
as documented.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from tests.conftest import FAST
from tests.functional.actions import behave
from tests.helpers import ADMIN_TOKEN, LiveServer

_server: LiveServer | None = None


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    global _server
    # schemathesis probes each operation with an invalid token, from one address: more failed
    # authentications than the default budget, which would turn its expected 401s into 429s
    server = LiveServer(
        Path(tmp_path_factory.mktemp("schemathesis")), **FAST, HATCHWAY_AUTH_FAILURE_BUDGET="100000"
    ).start()
    with server.client() as hw:
        hw.register_action(behave())
        hw.wait(hw.start_run("behave")["id"], timeout=20)
    _server = server
    yield server
    server.kill()


def _load() -> schemathesis.BaseSchema:
    from hatchway.api import create_app
    from hatchway.config import Settings
    from hatchway.executors.base import BaseAttemptExecutor
    from hatchway.store.sqlite import SqliteStore
    from hatchway.wiring import build_placement, build_services

    class NoExecutor(BaseAttemptExecutor):
        def execute(self, *args: object) -> object:  # pragma: no cover - the document only
            raise NotImplementedError

    settings = Settings()
    placement = build_placement(settings, sync=NoExecutor())  # type: ignore[abstract]
    api = create_app(build_services(settings, store=SqliteStore(":memory:"), placement=placement))
    return schemathesis.openapi.from_dict(api.openapi())


schema = _load()


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api_conforms_to_its_openapi(case: schemathesis.Case, live: LiveServer) -> None:
    # The API also checks meaning the schema cannot say (scope names, an existing project, an
    # expiry in the future), so a schema-valid request may rightly be refused with a 4xx: that
    # one check is off; every other (no 5xx, documented codes, types, bodies, headers) stays on.
    case.call_and_validate(
        base_url=live.url,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=45,
        excluded_checks=[positive_data_acceptance],
    )


def test_the_checked_document_is_the_one_the_server_publishes(live: LiveServer) -> None:
    # The cases above are generated at collection time from a document built in-process; this
    # pins that it is the very document a client downloads from a running server.
    import httpx

    published = httpx.get(f"{live.url}/openapi.json", timeout=30).json()
    assert published["paths"] == schema.raw_schema["paths"]
    assert published["components"] == schema.raw_schema["components"]
