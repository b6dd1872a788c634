"""Secrets: envelope encryption (``box.py``) and redaction (``redact.py``); the box a process uses
is picked by :func:`hatchway.wiring.build_secret_box`."""
