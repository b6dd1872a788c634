"""Secrets: envelope encryption bound to project/environment/action, and no plaintext anywhere."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from urllib.parse import quote

import pytest

from hatchway.client import ApplicationErrorResponse, Client, UnavailableResponse, UserErrorResponse, as_json
from hatchway.config import Settings
from hatchway.domain.parameters import CIPHERTEXT_PREFIX
from hatchway.services import Services
from hatchway.wiring import bootstrap, build_services
from tests.conftest import inprocess_client, make_settings
from tests.functional.actions import behave
from tests.helpers import LiveServer

CANARY = "Canary-7f3a9-s3cr3t/+="


def spellings(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [
        raw,
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        json.dumps(secret)[1:-1].encode(),
        quote(secret, safe="").encode(),
    ]


def assert_absent(blob: bytes | str, secret: str = CANARY) -> None:
    data = blob.encode() if isinstance(blob, str) else blob
    for form in spellings(secret):
        assert form not in data, f"a spelling of the secret leaked: {form!r}"


def test_encrypt_values_and_ciphertexts(hw: Client) -> None:
    one = hw.encrypt(CANARY)
    assert one.startswith(CIPHERTEXT_PREFIX)
    assert hw.encrypt(CANARY) != one  # fresh randomness each time
    assert hw.encrypt(one) == one  # a ciphertext is left as it is
    many = hw.encrypt_values({"#a": "x-value-1", "#b": "y-value-2"}, action="behave")
    assert set(many) == {"#a", "#b"} and all(v.startswith(CIPHERTEXT_PREFIX) for v in many.values())
    assert_absent(one)


def test_a_secret_never_shows_in_answers_logs_or_errors(hw: Client) -> None:
    hw.register_action(behave())
    # plain value, encrypted on receipt
    sync = hw.call_sync("behave", "check", {"behaviour": "print_secret", "#secret": CANARY})
    assert sync["ret"] == {"secret": "[hidden]", "nested": ["[hidden]"]}
    run = hw.start_run("behave", {"behaviour": "print_secret", "#secret": hw.encrypt(CANARY)})
    assert run["parameters"]["#secret"] == "[hidden]"
    final = hw.wait(run["id"], timeout=20)
    assert final["status"] == "SUCCESSFUL"
    logs = hw.logs(run["id"])["items"]
    messages = [e["msg"] for e in logs]
    assert "raw [hidden]" in messages and "split [hidden] done" in messages
    assert "b64 [hidden]" in messages and "url [hidden]" in messages
    with pytest.raises(UserErrorResponse) as caught:
        hw.call_sync("behave", "check", {"behaviour": "user_error", "#secret": CANARY})
    for blob in (json.dumps(as_json(sync)), json.dumps(as_json(final)), json.dumps(as_json(logs)),
                 json.dumps(caught.value.body), json.dumps(as_json(hw.list_runs()))):  # fmt: skip
        assert_absent(blob)


def test_nothing_at_rest_or_in_the_server_log_holds_the_plaintext(tmp_path: Path) -> None:
    server = LiveServer(tmp_path / "home", HATCHWAY_LOG_LEVEL="DEBUG").start()
    try:
        with server.client() as hw:
            hw.register_action(behave())
            hw.call_sync("behave", "check", {"behaviour": "print_secret", "#secret": CANARY})
            with pytest.raises(ApplicationErrorResponse):
                hw.call_sync("behave", "check", {"behaviour": "app_error", "#secret": CANARY})
            run = hw.start_run("behave", {"behaviour": "print_secret", "#secret": CANARY})
            hw.wait(run["id"], timeout=20)
            hw.start_run("behave", {"behaviour": "sleep", "seconds": "30", "#secret": CANARY})  # still queued/running
    finally:
        server.kill()
    # a crash leaves the running attempt's private workspace behind; the next start removes it
    restarted = LiveServer(tmp_path / "home", HATCHWAY_LOG_LEVEL="DEBUG", HATCHWAY_WORKERS="0").start()
    restarted.kill()
    home = tmp_path / "home"
    work = Settings.from_env({"HATCHWAY_HOME": str(home)}).work_dir  # workspaces live outside the home
    for path in [*home.rglob("*"), *work.rglob("*")]:
        if path.is_file():
            assert_absent(path.read_bytes())
    assert_absent(server.log())
    assert_absent(restarted.log())
    assert not any(work.glob("run_*")), "a workspace (with its config.json) was left behind"


def test_a_fresh_home_is_private_from_the_first_start(tmp_path: Path) -> None:
    # Given a home that does not exist yet and no bootstrap token in the environment
    home = tmp_path / "home"
    env = {"HATCHWAY_HOME": str(home), "HATCHWAY_EXECUTOR": "process"}

    def start() -> tuple[Services, str]:
        services = build_services(Settings.from_env(env), pool=True)
        return services, bootstrap(services)

    # When the gateway starts for the first time
    services, token = start()
    try:
        # Then the home, the database, the key file and the admin token file are its user's alone,
        # and the key exists before any secret was sent
        def mode(path: Path) -> int:
            return stat.S_IMODE(path.stat().st_mode)

        assert mode(home) == 0o700
        assert mode(services.settings.key_path) == 0o600 and len(services.settings.key_path.read_bytes()) == 32
        assert mode(services.settings.token_path) == 0o600
        assert services.settings.token_path.read_text().strip() == token
        assert all(mode(p) == 0o600 for p in home.glob("*.db*")) and any(home.glob("*.db"))
        assert services.auth.authenticate(f"Bearer {token}").project_id is None  # the global admin
        key = services.settings.key_path.read_bytes()
    finally:
        services.close()
    # And a second start keeps the same token and key
    again, token_again = start()
    try:
        assert token_again == token and again.settings.key_path.read_bytes() == key
    finally:
        again.close()


def test_ciphertexts_are_bound_to_their_place(hw: Client) -> None:
    hw.register_action(behave())
    hw.register_action(behave(name="other"))
    other_project = hw.create_project("other")["id"]
    hw.register_action(behave(), project=other_project)
    foreign = {
        "project": hw.encrypt(CANARY, project=other_project),
        "environment": Client(hw.url, hw.token, environment="production", transport=hw._http._transport).encrypt(
            CANARY
        ),
        "action": hw.encrypt(CANARY, action="other"),
    }
    for where, ciphertext in foreign.items():
        with pytest.raises(UserErrorResponse) as caught:
            hw.call_sync("behave", "check", {"#secret": ciphertext})
        assert "'#secret'" in caught.value.message, where
        assert_absent(caught.value.message)
        failed = hw.wait(hw.start_run("behave", {"#secret": ciphertext})["id"], timeout=20)
        assert failed["status"] == "FAILED" and failed["error"]["kind"] == "user", where
    # bound to this action, or to the whole project: accepted
    for ciphertext in (hw.encrypt(CANARY, action="behave"), hw.encrypt(CANARY)):
        assert hw.call_sync("behave", "check", {"behaviour": "print_secret", "#secret": ciphertext})["ret"]
    # a damaged ciphertext is a user error, not a crash
    with pytest.raises(UserErrorResponse):
        hw.call_sync("behave", "check", {"#secret": CIPHERTEXT_PREFIX + "AAAA"})


def test_a_stored_secret_the_worker_cannot_open_fails_the_run_as_unavailable(tmp_path: Path) -> None:
    from hatchway.worker import WorkerPool

    # Given a run accepted with a secret while the key was good, and no worker running yet
    settings = make_settings(tmp_path / "home")
    services = build_services(settings, pool=True)
    bootstrap(services)
    with inprocess_client(services) as hw:
        hw.register_action(behave())
        run_id = hw.start_run("behave", {"#secret": CANARY})["id"]
    services.close()
    # When the key file is damaged and a gateway with workers starts on the same home
    settings.key_path.write_bytes(b"damaged")
    services = build_services(settings, pool=True)
    bootstrap(services)
    workers = WorkerPool(services, size=1)
    workers.start()
    try:
        with inprocess_client(services) as hw:
            run = hw.wait(run_id, timeout=20)
    finally:
        workers.stop(grace_seconds=2)
        services.close()
    # Then the run fails with a platform reason (not the user's fault), the action never started,
    # and neither the secret nor a workspace was left anywhere
    assert run["status"] == "FAILED" and run["error"]["kind"] == "unavailable", run
    assert run["error"]["exceptionId"]
    assert_absent(json.dumps(as_json(run)))
    assert not any(settings.work_dir.glob("run_*"))


def test_an_unusable_key_means_503_and_nothing_started(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    settings.home.mkdir(parents=True)
    settings.key_path.write_bytes(b"damaged")
    from hatchway.wiring import build_services

    services = build_services(settings, pool=True)
    bootstrap(services)
    with inprocess_client(services) as hw:
        hw.register_action(behave())
        with pytest.raises(UnavailableResponse) as caught:
            hw.call_sync("behave", "check", {"#secret": CANARY})
        assert caught.value.retry_after is not None
        with pytest.raises(UnavailableResponse):
            hw.encrypt(CANARY)
        with pytest.raises(UnavailableResponse):
            hw.start_run("behave", {"#secret": CANARY})
        assert hw.list_runs()["items"] == []
    services.close()
