"""The shared boto3 clients of :class:`hatchway.aws.clients.AwsClients` (no AWS call is made)."""

from __future__ import annotations

import threading

import pytest

from hatchway.aws.clients import AwsClients
from tests.awsmock import FAKE_CREDENTIALS, patched_env


def test_threads_sharing_a_client_see_one_class_per_error() -> None:
    # `except client.exceptions.ConditionalCheckFailedException` must catch what any thread's call
    # raised; botocore makes those classes on first use, so threads racing there got different ones
    pytest.importorskip("boto3")
    with patched_env(FAKE_CREDENTIALS):
        for _ in range(30):
            aws = AwsClients("us-east-1", "http://127.0.0.1:9")
            seen: list[type] = []
            start = threading.Barrier(8)

            def first_use(aws: AwsClients = aws, seen: list[type] = seen, start: threading.Barrier = start) -> None:
                start.wait()
                seen.append(aws.client("dynamodb").exceptions.ConditionalCheckFailedException)

            threads = [threading.Thread(target=first_use) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(set(seen)) == 1
