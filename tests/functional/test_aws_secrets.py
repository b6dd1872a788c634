"""Secrets on the aws backend: KMS envelope encryption through the gateway, and how few KMS calls it costs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from hatchway.api.present import sync_body
from hatchway.domain.parameters import is_ciphertext
from hatchway.domain.runs import RunRequest
from hatchway.domain.tenants import Principal
from hatchway.errors import SecretBindingError
from hatchway.executors.process import ProcessExecutor
from hatchway.services import Services
from hatchway.wiring import build_placement
from tests.awsmock import CallCounter, aws_services, aws_settings, moto_in_process

pytestmark = pytest.mark.aws

ADMIN = Principal(None, None, frozenset({"admin"}))
SECRETS = [f"#s{i}" for i in range(5)]
ACTION = {
    "name": "uses-secrets",
    "sync_actions": ["check"],
    "parameters": [{"name": name, "required": True} for name in SECRETS],
    "container_parameters": {"entry_point": ["/bin/echo"], "command": ['{"ok": true}']},
}


@pytest.fixture
def kms_services(tmp_path: Path) -> Iterator[tuple[Services, CallCounter]]:
    with moto_in_process():
        session = boto3.session.Session()
        counter = CallCounter(session)
        settings = aws_settings(tmp_path / "home")
        services = aws_services(
            settings, session, build_placement(settings, sync=ProcessExecutor.from_settings(settings))
        )
        yield services, counter
        services.placement.close()


def test_a_hundred_runs_with_five_secrets_cost_one_kms_decrypt(kms_services: tuple[Services, CallCounter]) -> None:
    services, counter = kms_services
    services.actions.register(ADMIN, "proj_local", "development", ACTION)
    # Given five secrets encrypted for one project (one data key per context and cache period)
    counter.clear()
    values = {
        name: services.tenants.encrypt(ADMIN, "proj_local", "development", f"secret-value-{name}") for name in SECRETS
    }
    assert all(is_ciphertext(v) for v in values.values())
    assert counter.count("kms", "GenerateDataKey") == 1
    counter.clear()
    # When a hundred runs use them
    for _ in range(100):
        answer = sync_body(
            services.runs.call_sync(ADMIN, "proj_local", "development", "uses-secrets", "check", RunRequest(values))
        )
        assert answer["ret"] == {"ok": True}
    # Then KMS decrypted the data key once: the cache answered the other 499 decryptions
    assert counter.count("kms", "Decrypt") == 1, counter.summary()
    assert counter.count("kms") == 1


def test_each_process_decrypts_its_data_key_once(kms_services: tuple[Services, CallCounter]) -> None:
    from hatchway.aws.clients import AwsClients
    from hatchway.aws.kms import kms_secret_box

    services, counter = kms_services
    ciphertext = services.tenants.encrypt(ADMIN, "proj_local", "development", "s3cret-value")
    # a container adapter builds its own box: its first decryption asks KMS, later ones do not
    settings = services.settings
    fresh = kms_secret_box(settings, aws=AwsClients(settings.aws.aws_region, None, counter_session(services)))
    counter.clear()
    for _ in range(20):
        assert fresh.decrypt(ciphertext, "proj_local", "development", "any") == "s3cret-value"
    assert counter.count("kms", "Decrypt") == 1


def counter_session(services: Services) -> Any:
    return services.repos.runs.table.aws.session  # type: ignore[attr-defined]


def test_the_encryption_context_binds_a_ciphertext_to_its_project(kms_services: tuple[Services, CallCounter]) -> None:
    services, _ = kms_services
    ciphertext = services.tenants.encrypt(ADMIN, "proj_local", "development", "bound-value", action="uses-secrets")
    box = services.tenants.box
    assert box.decrypt(ciphertext, "proj_local", "development", "uses-secrets") == "bound-value"
    for project, env, action in (
        ("proj_other", "development", "uses-secrets"),
        ("proj_local", "production", "uses-secrets"),
        ("proj_local", "development", "another-action"),
    ):
        with pytest.raises(SecretBindingError):
            box.decrypt(ciphertext, project, env, action)
