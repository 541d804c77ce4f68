"""Analysing a list of images in batches: reads overlap with inference, every image ends analysed or failed.

Returns two frames, the shapes of the `image_attributes` and `image_embeddings` assets: one row per image,
failures included (status "failed" with the reason), so nothing is ever silently dropped. Each row's
`content_hash` is the sha256 of the bytes actually read (the inventory does not read objects); bytes that the
model version already analysed or failed on for good are not analysed again (status "unchanged").
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from imgsearch_pipeline.analysis.pacing import Pacer
from imgsearch_pipeline.analysis.provider import AnalysisFailure, AnalysisProvider, ProviderConfigurationError
from imgsearch_pipeline.analysis.retry import (
    RetriesExhausted,
    RetryPolicy,
    TransientProviderError,
    call_with_retry,
    is_transient,
)
from imgsearch_pipeline.analysis.types import ImageAnalysis

ATTRIBUTE_COLUMNS = ["image_id", "partition_key", "content_hash", "etag", "s3_key", "status", "error", "retryable",
                     "category", "category_confidence", "colors", "color_coverage", "pattern", "has_print",
                     "attributes", "description", "model_version"]
EMBEDDING_COLUMNS = ["image_id", "partition_key", "image_embedding", "text_embedding"]


def read_batches(todo: Sequence[dict], read: Callable[[str], bytes], batch_size: int,
                 workers: int) -> Iterator[list[tuple[dict, bytes | Exception]]]:
    """Yield batches of (row, bytes-or-error); the next batch downloads while the current one is analysed.

    A row read comes back with `content_hash` set to the sha256 of its bytes: what its analysis describes, even
    if the object changed after the inventory listed it."""
    def fetch(row: dict) -> tuple[dict, bytes | Exception]:
        try:
            data = read(row["s3_key"])
        except Exception as e:  # noqa: BLE001 - recorded per image, never fatal for the partition
            return row, e
        return {**row, "content_hash": hashlib.sha256(data).hexdigest()}, data

    with ThreadPoolExecutor(max_workers=workers) as pool:
        chunks = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
        pending = pool.map(fetch, chunks[0]) if chunks else None
        for n in range(len(chunks)):
            current = list(pending)
            if n + 1 < len(chunks):
                pending = pool.map(fetch, chunks[n + 1])
            yield current


def to_analyse(batch: Sequence[tuple[dict, bytes | Exception]], provider: AnalysisProvider,
               attrs: list[dict]) -> list[tuple[dict, bytes]]:
    """The reads the model must see. The others get their row in `attrs` here: a failed read fails the image
    (retryable), and bytes this model version already analysed or failed on for good (`analysed_hash`,
    `failed_hash` of `images_to_analyse`) are "unchanged": the same bytes under a new ETag cost no model call."""
    out = []
    for row, data in batch:
        if not isinstance(data, bytes):
            attrs.append(_failed(row, AnalysisFailure(f"could not read from S3: {type(data).__name__}: {data}",
                                                      retryable=True), provider))
        elif row["content_hash"] in (row.get("analysed_hash"), row.get("failed_hash")):
            attrs.append(_row(row, "unchanged", provider.model_version))
        else:
            out.append((row, data))
    return out


def analyse_with_retry(provider: AnalysisProvider, images: Sequence[bytes], policy: RetryPolicy,
                       sleep: Callable[[float], None] = time.sleep) -> list[ImageAnalysis | AnalysisFailure]:
    """One result per image. A transient error of the whole batch retries the batch; a retryable failure of
    one image retries that image alone; both back off per `policy` and end as a failure with the reason."""
    try:
        results, _ = call_with_retry(lambda: provider.analyse(images), is_transient, policy, sleep)
    except RetriesExhausted as e:
        return [AnalysisFailure(f"provider unavailable: {e}", retryable=True)] * len(images)
    except ProviderConfigurationError:
        raise
    except Exception as e:  # noqa: BLE001 - a provider crash fails this batch's images, with the reason
        return [AnalysisFailure(f"provider error: {type(e).__name__}: {e}", retryable=True)] * len(images)
    results = list(results)
    for i, result in enumerate(results):
        if isinstance(result, AnalysisFailure) and result.retryable:
            results[i] = _retry_one(provider, images[i], policy, sleep)
    return results


def _retry_one(provider: AnalysisProvider, image: bytes, policy: RetryPolicy,
               sleep: Callable[[float], None]) -> ImageAnalysis | AnalysisFailure:
    def attempt() -> ImageAnalysis | AnalysisFailure:
        out = provider.analyse([image])[0]
        if isinstance(out, AnalysisFailure) and out.retryable:
            raise TransientProviderError(out.reason)
        return out

    try:
        return call_with_retry(attempt, is_transient, policy, sleep)[0]
    except RetriesExhausted as e:
        return AnalysisFailure(str(e), retryable=True)
    except ProviderConfigurationError:
        raise
    except Exception as e:  # noqa: BLE001
        return AnalysisFailure(f"provider error: {type(e).__name__}: {e}", retryable=True)


def analyse_images(todo: Sequence[dict], read: Callable[[str], bytes], provider: AnalysisProvider,
                   batch_size: int = 32, read_workers: int = 8, retry: RetryPolicy | None = None,
                   pacer: Pacer | None = None, max_in_flight: int = 1,
                   sleep: Callable[[float], None] = time.sleep) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Analyse rows of `images_to_analyse` (image_id, s3_key, etag, content_hash and the optional analysed_hash,
    failed_hash); one output row per input row.

    Each read batch is cut into provider calls of `provider.call_size` images; at most `max_in_flight` calls
    run at once and `pacer` keeps them under the images-per-second quota."""
    retry = retry or RetryPolicy()
    pacer = pacer or Pacer(None)
    attrs: list[dict] = []
    vecs: list[dict] = []

    def call(images: list[bytes]) -> list[ImageAnalysis | AnalysisFailure]:
        pacer.acquire(len(images))
        return analyse_with_retry(provider, images, retry, sleep)

    with ThreadPoolExecutor(max_workers=max_in_flight) as calls:
        for batch in read_batches(todo, read, batch_size, read_workers):
            readable = to_analyse(batch, provider, attrs)
            size = provider.call_size or len(readable) or 1
            chunks = [[data for _, data in readable[i:i + size]] for i in range(0, len(readable), size)]
            results = [r for out in calls.map(call, chunks) for r in out]
            collect([row for row, _ in readable], results, provider, attrs, vecs)
    return pd.DataFrame(attrs, columns=ATTRIBUTE_COLUMNS), pd.DataFrame(vecs, columns=EMBEDDING_COLUMNS)


def collect(rows: Sequence[dict], results: Sequence[ImageAnalysis | AnalysisFailure], provider: AnalysisProvider,
            attrs: list[dict], vecs: list[dict]) -> None:
    """Append one attribute row per image (analysed or failed) and one vector row per analysed image.

    Vectors are kept as float32 arrays (what Postgres stores): as Python float lists a partition's vectors
    would take ~8x the memory (~53 KB per image for the builtin provider's 1280 + 384 floats)."""
    for row, result in zip(rows, results, strict=True):
        if isinstance(result, ImageAnalysis):
            attrs.append(_analysed(row, result))
            vecs.append({"image_id": row["image_id"], "partition_key": row.get("partition_key"),
                         "image_embedding": np.asarray(result.image_embedding, dtype=np.float32),
                         "text_embedding": np.asarray(result.text_embedding, dtype=np.float32)})
        else:
            attrs.append(_failed(row, result, provider))


def _row(row: dict, status: str, model_version: str) -> dict:
    """An attribute row without analysis values: the image's identity, its bytes' hash and its status."""
    return {
        "image_id": row["image_id"], "partition_key": row.get("partition_key"),
        "content_hash": row["content_hash"], "etag": row.get("etag"), "s3_key": row["s3_key"],
        "status": status, "error": None, "retryable": None, "category": None, "category_confidence": None,
        "colors": [], "color_coverage": [], "pattern": None, "has_print": None, "attributes": {},
        "description": "", "model_version": model_version,
    }


def _analysed(row: dict, a: ImageAnalysis) -> dict:
    return _row(row, "analysed", a.model_version) | {
        "category": a.category, "category_confidence": a.category_confidence,
        "colors": a.color_ids, "color_coverage": [c.coverage for c in a.colors], "pattern": a.pattern,
        "has_print": a.has_print, "attributes": a.attributes, "description": a.description,
    }


def _failed(row: dict, failure: AnalysisFailure, provider: AnalysisProvider) -> dict:
    return _row(row, "failed", provider.model_version) | {"error": failure.reason, "retryable": failure.retryable}
