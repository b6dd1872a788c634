"""``hatchway aws bootstrap``: the AWS resources the aws backend needs, made where the settings point.

Against LocalStack or a moto server (``AWS_ENDPOINT_URL``) this gives a laptop the production store
path: the DynamoDB table (the same schema ``template.yaml`` declares), a KMS key with the alias
the backend looks for, and the outputs bucket. Every step is idempotent; a deployed stack gets
these from the template instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hatchway.aws.clients import AwsClients, error_code, translate
from hatchway.config import Settings


@dataclass
class Bootstrapped:
    """What exists after a bootstrap, and whether this call created it."""

    table: str
    key_arn: str
    key_alias: str
    bucket: str
    created: list[str]

    def environment(self) -> dict[str, str]:
        """The variables that point a gateway at these resources."""
        return {
            "HATCHWAY_BACKEND": "aws",
            "HATCHWAY_TABLE_NAME": self.table,
            "HATCHWAY_KMS_KEY_ID": self.key_alias,
            "HATCHWAY_BUCKET": self.bucket,
        }


def bootstrap(
    settings: Settings, create_table: Callable[[AwsClients], bool], aws: AwsClients | None = None
) -> Bootstrapped:
    """Create the table (``create_table``: True if it made it), key (and alias) and bucket of
    ``settings`` unless they exist. ``wiring.aws_bootstrap`` gives it the store's table."""
    aws = aws or AwsClients.from_settings(settings)
    created: list[str] = []
    if create_table(aws):
        created.append(f"table {settings.store.table_name}")
    alias = settings.aws.kms_key if settings.aws.kms_key.startswith("alias/") else None
    kms = aws.client("kms")
    with translate("the key service"):
        try:
            arn = kms.describe_key(KeyId=settings.aws.kms_key)["KeyMetadata"]["Arn"]
        except kms.exceptions.NotFoundException:
            if alias is None:
                raise
            arn = kms.create_key(Description=f"{settings.aws.resource_prefix}: secret parameters")["KeyMetadata"]["Arn"]
            kms.create_alias(AliasName=alias, TargetKeyId=arn)
            created.append(f"key {alias}")
    bucket = settings.aws.outputs_bucket
    s3 = aws.client("s3")
    with translate("the outputs bucket"):
        try:
            s3.head_bucket(Bucket=bucket)
        except s3.exceptions.ClientError as exc:
            if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
            options = (
                {} if aws.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": aws.region}}
            )
            s3.create_bucket(Bucket=bucket, **options)
            created.append(f"bucket {bucket}")
    return Bootstrapped(settings.store.table_name, arn, alias or settings.aws.kms_key, bucket, created)
