"""The AWS adapters: clients and error translation, Lambda, Batch, ECS, Step Functions, S3, KMS.

Nothing is imported here: boto3 loads only when a client is built (aws.clients).
"""
