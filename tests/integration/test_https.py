"""HTTPS on a laptop: `hatchway serve --dev-cert`, and `--tls-cert/--tls-key` with given files."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import httpx
import pytest

from hatchway.cli.tls import dev_certificate
from tests.helpers import ADMIN_TOKEN, LiveServer

pytestmark = pytest.mark.integration


def test_dev_cert_serves_https_that_verifies_against_the_dev_ca(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # Given a server started with a development certificate
    # (the CA does not exist before the server makes it, so waiting for it to start verifies nothing)
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    server = LiveServer(home, "--dev-cert").use_https(unverified)
    server.start()
    try:
        ca = ssl.create_default_context(cafile=home / "tls" / "dev-ca.pem")
        # When a client that trusts only the development CA calls it
        answer = httpx.get(f"{server.url}/v1/projects/proj_local", headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                           verify=ca)  # fmt: skip
        # Then the certificate verifies for 127.0.0.1 and the API answers
        assert answer.status_code == 200
        # and a client that trusts only the public CAs refuses it
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/health")
        # and the private keys are readable by their owner only
        for key in ("dev-key.pem", "dev-ca-key.pem"):
            assert stat.S_IMODE((home / "tls" / key).stat().st_mode) == 0o600
        # and the console is served over the same HTTPS
        assert httpx.get(f"{server.url}/ui/", verify=ca).status_code == 200
    finally:
        server.kill()


def test_given_certificate_files_are_used(tmp_path: Path) -> None:
    made = dev_certificate(tmp_path / "certs", ["localhost"])
    server = LiveServer(tmp_path / "home", "--tls-cert", str(made.cert), "--tls-key", str(made.key))
    trusted = ssl.create_default_context(cafile=made.ca)
    server.use_https(trusted).start()
    try:
        assert httpx.get(f"{server.url}/health", verify=trusted).json()["status"] == "ok"
    finally:
        server.kill()
