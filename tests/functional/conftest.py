"""Fixtures shared by the functional tier's AWS tests (moto)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.functional.awsstack import Stack


@pytest.fixture(scope="module")
def infrastructure() -> Iterator[dict[str, Any]]:
    """The moto stand-ins of the stack's queue, cluster, table, key and bucket, one set per test module."""
    from tests.functional.awsstack import moto_infrastructure

    with moto_infrastructure() as made:
        yield made


@pytest.fixture
def batch(tmp_path: Path, infrastructure: dict[str, Any]) -> Stack:
    """A gateway on the aws backend whose runs go to AWS Batch (sync calls to Lambda), on moto."""
    from hatchway.aws.batch import BatchEngine
    from tests.functional.awsstack import build_stack

    return build_stack(tmp_path, infrastructure, BatchEngine)


@pytest.fixture
def ecs(tmp_path: Path, infrastructure: dict[str, Any]) -> Stack:
    """The same with ECS Fargate as the run engine."""
    from hatchway.aws.ecs import EcsEngine
    from tests.functional.awsstack import build_stack

    return build_stack(tmp_path, infrastructure, EcsEngine)
