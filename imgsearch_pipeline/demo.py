"""The demo: sample catalogue into local S3, every partition materialized, a search to prove it works."""

from __future__ import annotations

from collections.abc import Callable

from imgsearch_pipeline.samples.generator import SampleProduct, feed_jsonl
from imgsearch_pipeline.storage.s3 import ensure_bucket

FEED_KEY = "feeds/catalog.jsonl"


def upload_catalog(client, bucket: str, products: list[SampleProduct], feed_key: str = FEED_KEY) -> int:
    """Put every sample image and the catalogue feed into the bucket; returns the number of images."""
    ensure_bucket(client, bucket)
    n = 0
    for product in products:
        for image in product.images:
            client.put_object(Bucket=bucket, Key=image.key, Body=image.data, ContentType="image/jpeg")
            n += 1
    client.put_object(Bucket=bucket, Key=feed_key, Body=feed_jsonl(products), ContentType="application/x-ndjson")
    return n


def partitions_of(products: list[SampleProduct], partition_of: Callable[[str], str | None]) -> list[str]:
    return sorted({p for product in products for image in product.images if (p := partition_of(image.key))})
