"""Fixtures shared by the functional tier's AWS tests (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def infrastructure() -> Iterator[dict[str, Any]]:
    """The moto stand-ins of the stack's queue, cluster, table, key and bucket, one set per test module."""
    from tests.functional.awsstack import moto_infrastructure

    with moto_infrastructure() as made:
        yield made
