"""Where the catalogue's images live: a bucket (via dagster-aws's S3 resource), its layout and its feed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource, get_dagster_logger
from dagster_aws.s3 import S3Resource
from pydantic import Field

from imgsearch_pipeline.catalog import DEFAULT_KEY_PATTERN, Catalog, KeyPattern, parse_feed
from imgsearch_pipeline.partitions import partition_key_problem
from imgsearch_pipeline.storage.s3 import get_bytes

_CLIENTS: dict[tuple[int, str], Any] = {}


class ImageStoreResource(ConfigurableResource):
    s3: S3Resource
    bucket: str
    root_prefix: str = Field(default="catalog/", description="only keys under this prefix are catalogue images")
    partition_depth: int = Field(default=3, ge=1, description="path segments that form a partition prefix")
    feed_key: str | None = Field(
        default="feeds/catalog.jsonl",
        description="catalogue feed (.jsonl or .csv): a key in the bucket, or a local file as file:///path",
    )
    key_pattern: str = Field(default=DEFAULT_KEY_PATTERN, description="regex naming product_id when no feed does")

    def client(self):
        """One boto3 client per process and configuration (clients are thread-safe): building one costs ~150 ms
        of CPU, parsing botocore's service model, more than the model spends on an image."""
        key = (os.getpid(), self.s3.model_dump_json())
        if (client := _CLIENTS.get(key)) is None:
            client = _CLIENTS.setdefault(key, self.s3.get_client())
        return client

    def read(self, key: str) -> bytes:
        return get_bytes(self.client(), self.bucket, key)

    def catalog(self) -> Catalog:
        """The feed's products and image ownership; an empty catalogue when no feed exists."""
        if not self.feed_key:
            return Catalog()
        if self.feed_key.startswith("file://"):
            path = Path(self.feed_key.removeprefix("file://"))
            if not path.exists():
                raise FileNotFoundError(f"catalogue feed {path} does not exist")
            return parse_feed(path.read_bytes(), path.name)
        client = self.client()
        try:
            data = get_bytes(client, self.bucket, self.feed_key)
        except client.exceptions.NoSuchKey:
            return Catalog()
        return parse_feed(data, self.feed_key)

    def products_from_keys(self) -> KeyPattern:
        return KeyPattern(self.key_pattern)

    def partition_of(self, key: str) -> str | None:
        """The prefix partition a key belongs to ("catalog/women/dress/"), or None outside the catalogue."""
        if not key.startswith(self.root_prefix):
            return None
        parts = key.split("/")
        if len(parts) <= self.partition_depth:
            return None
        prefix = "/".join(parts[: self.partition_depth]) + "/"
        if problem := partition_key_problem(prefix):
            get_dagster_logger().warning(f"not ingesting {key!r}: its prefix cannot be a partition: {problem}")
            return None
        return prefix
