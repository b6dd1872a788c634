"""boto3 clients for the AWS backend, built late and shared, and botocore errors mapped once.

Every AWS-facing part of hatchway (the DynamoDB store, the KMS secret box, the Lambda, Batch and
ECS executors, the container-side attempt) takes an :class:`AwsClients`. It creates each client on
first use from one boto3 session, with the region and ``AWS_ENDPOINT_URL`` of the settings (so
LocalStack or a moto server work unchanged) and bounded timeouts and retries. Tests pass their own
session (to count calls through botocore events) or ready-made clients.

:func:`translate` turns the failures that mean "AWS cannot be reached or is overloaded" into
:class:`~hatchway.errors.Unavailable` (503, nothing started); anything else stays a fault.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hatchway.errors import Unavailable

if TYPE_CHECKING:
    from hatchway.config import Settings

DEFAULT_REGION = "us-east-1"

#: error codes that mean "try again later", whatever the service
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServiceException",
        "KMSInternalException",
        "DependencyTimeoutException",
        "SlowDown",
    }
)
#: a resource the deployment should have made is missing (table, bucket, queue)
MISSING_CODES = frozenset({"ResourceNotFoundException", "NoSuchBucket"})

#: read timeouts per service; Lambda answers sync calls for up to 30 s
READ_TIMEOUTS = {"lambda": 40.0}

_shared: dict[tuple[str, str | None], AwsClients] = {}
_shared_lock = threading.Lock()


class AwsClients:
    """Lazily built, shared boto3 clients for one region and endpoint."""

    def __init__(
        self,
        region: str | None = None,
        endpoint_url: str | None = None,
        session: Any = None,
        **clients: Any,
    ) -> None:
        self.region = region or DEFAULT_REGION
        self.endpoint_url = endpoint_url
        self._session = session
        self._clients: dict[str, Any] = dict(clients)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, session: Any = None, **clients: Any) -> AwsClients:
        """Clients for the settings' region and endpoint: new ones when given a session or clients,
        else the ones this process already shares (a warm Lambda reuses their connections)."""
        if session is None and not clients:
            return cls.shared(settings.aws.aws_region, settings.aws.aws_endpoint_url)
        return cls(settings.aws.aws_region, settings.aws.aws_endpoint_url, session, **clients)

    @classmethod
    def shared(cls, region: str | None, endpoint_url: str | None) -> AwsClients:
        key = (region or DEFAULT_REGION, endpoint_url)
        with _shared_lock:
            found = _shared.get(key)
            if found is None:
                found = _shared[key] = cls(region, endpoint_url)
        return found

    @property
    def session(self) -> Any:
        """The boto3 session clients come from (created on first use)."""
        if self._session is None:
            import boto3

            self._session = boto3.session.Session()
        return self._session

    @property
    def botocore_session(self) -> Any:
        return self.session._session

    def client(self, service: str) -> Any:
        """The client of ``service`` (``dynamodb``, ``kms``, ``s3``, ``lambda``, ``batch``, ``ecs``, ``iam``)."""
        found = self._clients.get(service)
        if found is not None:
            return found
        with self._lock:
            found = self._clients.get(service)
            if found is None:
                found = self.session.client(
                    service, region_name=self.region, endpoint_url=self.endpoint_url, config=self.config(service)
                )
                # botocore makes a client's exception classes on first use, unlocked: threads racing
                # there get different classes, and `except client.exceptions.X` misses the X another
                # thread's call raised. Made here, once, before the client is shared.
                _ = found.exceptions
                self._clients[service] = found
        return found

    def config(self, service: str) -> Any:
        from botocore.config import Config

        return Config(
            connect_timeout=3,
            read_timeout=READ_TIMEOUTS.get(service, 10.0),
            retries={"mode": "standard", "max_attempts": 1 if service == "lambda" else 3},
            max_pool_connections=64,
            # links to objects (presigned GETs of large downloads) must be SigV4: S3 refuses any
            # other signature for an object encrypted with KMS, as every outputs-bucket object is
            **({"signature_version": "s3v4"} if service == "s3" else {}),
        )


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` ('' for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def is_unreachable(exc: BaseException) -> bool:
    """True for failures that say AWS could not be reached or refused for load, not a wrong request."""
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, ConnectionError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in RETRYABLE_CODES or code in MISSING_CODES or int(status or 0) >= 500
    return isinstance(exc, BotoCoreError) and "Timeout" in type(exc).__name__


@contextmanager
def translate(what: str) -> Iterator[None]:
    """Map an unreachable or overloaded AWS service to :class:`Unavailable` (``what`` names it)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        if is_unreachable(exc):
            raise Unavailable(f"{what} is unavailable; try again shortly") from exc
        raise
