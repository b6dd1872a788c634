"""The AWS backend's secret box: the Encryption SDK's KMS master key under the same envelope format.

:func:`kms_secret_box` builds an :class:`~hatchway.secrets.box.EsdkSecretBox` over a strict KMS
master key provider whose clients come from the gateway's boto3 session, with the endpoint of the
settings (``AWS_ENDPOINT_URL``: LocalStack or a moto server). The encryption context
``{project_id, environment, action}`` is sent to KMS with every data-key request, so the key
policy can bind a principal to its project with a ``kms:EncryptionContext:project_id`` condition -
the task role of a Batch job or ECS task can decrypt only its own project's secrets.

KMS calls stay few because the box's caching materials manager reuses a data key per
(key, context) for at most :data:`~hatchway.secrets.box.CACHE_SECONDS`: a burst of runs with
secrets of one project costs one ``Decrypt`` per data key, and encrypting values on receipt one
``GenerateDataKey`` per context and period.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hatchway.aws.clients import AwsClients, translate
from hatchway.secrets.box import EsdkSecretBox

if TYPE_CHECKING:
    from hatchway.config import Settings


class KmsSecretBox(EsdkSecretBox):
    """An Encryption SDK box whose master key is a KMS key; KMS outages are 503s."""

    def _sdk_errors(self) -> tuple[type[BaseException], ...]:
        from botocore.exceptions import BotoCoreError

        # the SDK wraps KMS's answers in its own errors, but lets connection failures through
        return (*super()._sdk_errors(), BotoCoreError)


def key_arn(aws: AwsClients, key_id: str) -> str:
    """The ARN of a key given by id, alias or ARN (strict providers decrypt only with ARNs)."""
    if key_id.startswith("arn:") and ":key/" in key_id:
        return key_id
    with translate("the key service"):
        arn: str = aws.client("kms").describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    return arn


def kms_provider(aws: AwsClients, arn: str) -> Any:
    """A strict KMS master key provider for ``arn`` whose clients use ``aws``'s session and endpoint."""
    from aws_encryption_sdk.key_providers.kms import StrictAwsKmsMasterKeyProvider

    class EndpointKmsProvider(StrictAwsKmsMasterKeyProvider):  # type: ignore[misc]
        def add_regional_client(self, region_name: str) -> None:
            if region_name not in self._regional_clients:
                client = aws.session.client(
                    "kms", region_name=region_name, endpoint_url=aws.endpoint_url, config=aws.config("kms")
                )
                self._register_client(client, region_name)
                self._regional_clients[region_name] = client

    return EndpointKmsProvider(key_ids=[arn], botocore_session=aws.botocore_session)


def kms_secret_box(settings: Settings, aws: AwsClients | None = None, **clients: Any) -> KmsSecretBox:
    """The secret box of the aws backend, for the KMS key the settings name."""
    session = clients.pop("session", None)
    aws = aws or AwsClients.from_settings(settings, session, **clients)
    return KmsSecretBox(kms_provider(aws, key_arn(aws, settings.aws.kms_key)))
