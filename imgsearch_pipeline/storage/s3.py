"""S3 access: one client factory (AWS, MinIO or the local moto server by endpoint) and paginated listings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def make_client(endpoint_url: str | None, region: str = "us-east-1"):
    """A boto3 S3 client with adaptive retries; local endpoints get dummy credentials if none are set."""
    config = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=10, read_timeout=60)
    kwargs: dict = {"region_name": region, "config": config}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
        session = boto3.session.Session()
        if session.get_credentials() is None:
            kwargs |= {"aws_access_key_id": "imgsearch", "aws_secret_access_key": "imgsearch"}
    return boto3.client("s3", **kwargs)


def ensure_bucket(client, bucket: str) -> None:
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError:
        client.create_bucket(Bucket=bucket)


@dataclass(frozen=True)
class S3Object:
    key: str
    etag: str
    size: int
    last_modified: datetime


def list_objects(client, bucket: str, prefix: str, images_only: bool = True) -> Iterator[S3Object]:
    """Every object under `prefix`, page by page (never the whole listing in memory at once)."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if images_only and not key.lower().endswith(IMAGE_SUFFIXES):
                continue
            yield S3Object(key, item["ETag"].strip('"'), item["Size"], item["LastModified"])


def get_bytes(client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()
