"""Secrets: envelope encryption (``box.py``) and redaction (``redact.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hatchway.config import Settings
    from hatchway.secrets.box import SecretBox


def make_secret_box(settings: Settings, **clients: Any) -> SecretBox:
    """A KMS-backed box on the aws backend, the local key file otherwise."""
    if settings.backend == "aws":
        from hatchway.aws.kms import kms_secret_box

        box: SecretBox = kms_secret_box(settings, **clients)
        return box
    from hatchway.secrets.box import local_secret_box

    return local_secret_box(settings.key_path)
