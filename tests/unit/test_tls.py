"""The development certificate: made once, reused while valid, renewed for new names or near expiry."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509

from hatchway.cli.tls import dev_certificate


def sans(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n.value) for n in names}


def test_names_localhost_and_the_given_hosts_and_is_signed_by_the_ca(tmp_path: Path) -> None:
    made = dev_certificate(tmp_path, ["0.0.0.0", "devbox"])  # noqa: S104 - a bind-all address is not a name
    assert sans(made.cert) == {"localhost", "devbox", str(ipaddress.ip_address("127.0.0.1")), "::1"}
    ca = x509.load_pem_x509_certificate(made.ca.read_bytes())
    server = x509.load_pem_x509_certificate(made.cert.read_bytes())
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_is_reused_while_valid_and_renewed_for_a_new_name_under_the_same_ca(tmp_path: Path) -> None:
    first = dev_certificate(tmp_path, ["devbox"])
    body, ca = first.cert.read_bytes(), first.ca.read_bytes()
    assert dev_certificate(tmp_path, ["devbox"]).cert.read_bytes() == body
    second = dev_certificate(tmp_path, ["other"])
    assert second.cert.read_bytes() != body
    assert second.ca.read_bytes() == ca  # nothing new to trust
    assert "other" in sans(second.cert)


def test_is_renewed_near_its_expiry(tmp_path: Path) -> None:
    first = dev_certificate(tmp_path, [])
    body = first.cert.read_bytes()
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=395)
    assert dev_certificate(tmp_path, [], now=later).cert.read_bytes() != body
