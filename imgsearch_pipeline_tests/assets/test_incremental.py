"""One S3 read per new image, and an index that is sent only what changed.

The inventory lists and reads nothing; the analysis step reads each new or changed object once and hashes
those bytes; `search_index` sends only documents that differ from what the index holds. Every S3 request goes
through a proxy that counts them; the model is wrapped to count the images it sees.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator

import pytest
from dagster import AssetKey, instance_for_test

from imgsearch_pipeline.samples.generator import feed_jsonl
from imgsearch_pipeline_tests.faults.proxy import FaultProxy, proxy_to
from imgsearch_pipeline_tests.faults.support import read_s3_through
from imgsearch_pipeline_tests.harness import Pipeline

ANALYSIS_ONLY = [AssetKey(k) for k in ("image_attributes", "image_embeddings", "image_analysis", "search_index")]


@pytest.fixture(scope="module")
def proxy(s3_server) -> Iterator[FaultProxy]:
    with proxy_to(s3_server) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def pipeline(new_settings, proxy) -> Iterator[Pipeline]:
    """A catalogue uploaded directly, nothing ingested; every run reaches S3 through the proxy."""
    with instance_for_test() as instance:
        p = Pipeline(new_settings(), instance, n_products=8, seed=7)
        read_s3_through(p, proxy.url)
        yield p


@pytest.fixture
def model_calls(pipeline, monkeypatch) -> list[bytes]:
    """The images the model is asked to analyse, as they come."""
    provider = pipeline.res["analysis"].get()
    seen: list[bytes] = []
    analyse = provider.analyse

    def counted(images):
        seen.extend(images)
        return analyse(images)

    monkeypatch.setattr(provider, "analyse", counted)
    return seen


def settled(p: Pipeline, model_calls: list[bytes]) -> str:
    """The busiest partition, ingested, with the model calls that took forgotten."""
    part = busiest(p)
    run(p, part)
    model_calls.clear()
    return part


def busiest(p: Pipeline) -> str:
    return max(p.partitions, key=lambda part: (len(keys_of(p, part)), part))


def keys_of(p: Pipeline, partition: str) -> dict[str, bytes]:
    """key -> uploaded bytes of the partition's images."""
    return {im.key: im.data for product in p.products for im in product.images
            if p.res["images"].partition_of(im.key) == partition}


def object_reads(p: Pipeline, proxy: FaultProxy, partition: str, since: int) -> list[str]:
    """Paths of the GETs of the partition's objects (not listings) since request number `since`."""
    prefix = f"/{p.settings.s3_bucket}/{partition}"
    return [r.path for r in proxy.requests[since:] if r.method == "GET" and r.path.startswith(prefix)]


def run(p: Pipeline, partition: str, selection: list[AssetKey] | None = None) -> dict[str, dict]:
    """Materialize the partition (or a selection of its assets); asset name -> its materialization metadata."""
    result = p.defs.resolve_job_def("ingest_partition").execute_in_process(
        partition_key=partition, instance=p.instance, asset_selection=selection)
    assert result.success
    return {e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()}


def image_rows(p: Pipeline, partition: str) -> dict[str, dict]:
    """key -> the image's row with its analysis of the current model version (None columns when none)."""
    with p.db() as conn:
        return {r["s3_key"]: r for r in conn.execute(
            "SELECT i.s3_key, i.image_id, i.etag, i.status, i.content_hash, a.content_hash AS analysed_hash, "
            "a.analysed_at FROM product_images i LEFT JOIN image_analysis a ON a.image_id = i.image_id "
            "AND a.model_version = %s WHERE i.partition_key = %s",
            (p.res["analysis"].get().model_version, partition))}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_inventory_reads_no_object_and_the_analysis_reads_each_once(pipeline, proxy, model_calls):
    part = busiest(pipeline)
    uploaded = keys_of(pipeline, part)
    seen = len(proxy.requests)
    meta = run(pipeline, part, [AssetKey("image_inventory")])
    assert object_reads(pipeline, proxy, part, seen) == []
    assert meta["image_inventory"]["new"] == len(uploaded)
    rows = image_rows(pipeline, part)
    assert {k: (r["status"], r["content_hash"]) for k, r in rows.items()} == dict.fromkeys(uploaded,
                                                                                            ("pending", None))

    seen = len(proxy.requests)
    meta = run(pipeline, part)
    reads = object_reads(pipeline, proxy, part, seen)
    assert len(reads) == len(set(reads)) == len(uploaded)  # one GET per image, none twice
    assert len(model_calls) == len(uploaded)
    assert meta["search_index"]["indexed"] == len(uploaded)
    rows = image_rows(pipeline, part)
    assert {k: (r["status"], r["content_hash"], r["analysed_hash"]) for k, r in rows.items()} == {
        k: ("analysed", sha256(data), sha256(data)) for k, data in uploaded.items()}


def test_a_rerun_with_nothing_new_reads_nothing_and_sends_nothing_to_the_index(pipeline, proxy, model_calls):
    part = settled(pipeline, model_calls)
    before = image_rows(pipeline, part)
    seen = len(proxy.requests)
    meta = run(pipeline, part)
    assert object_reads(pipeline, proxy, part, seen) == [] and model_calls == []
    assert (meta["search_index"]["indexed"], meta["search_index"]["removed"]) == (0, 0)
    assert meta["search_index"]["index_documents"] >= len(before)
    assert image_rows(pipeline, part) == before


def test_the_same_bytes_under_a_new_etag_are_read_again_but_not_analysed_again(pipeline, proxy, model_calls):
    part = settled(pipeline, model_calls)
    key, data = sorted(keys_of(pipeline, part).items())[0]
    before = image_rows(pipeline, part)
    s3, bucket = pipeline.res["images"].client(), pipeline.settings.s3_bucket
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)  # a multipart ETag: "<md5 of md5s>-1"
    part_etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=data)["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": [{"ETag": part_etag, "PartNumber": 1}]})
    new_etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    assert new_etag != before[key]["etag"]

    seen = len(proxy.requests)
    meta = run(pipeline, part)
    assert meta["image_inventory"]["changed"] == 1
    assert object_reads(pipeline, proxy, part, seen) == [f"/{bucket}/{key}"]
    assert model_calls == []
    assert meta["image_attributes"]["unchanged"] == 1 and meta["image_analysis"]["written"] == 0
    assert meta["search_index"]["indexed"] == 0
    after = image_rows(pipeline, part)
    assert after[key] == before[key] | {"etag": new_etag}  # the same analysis (analysed_at too), re-pointed
    assert after == before | {key: after[key]}


def test_bytes_that_change_between_listing_and_reading_are_the_bytes_hashed(pipeline, proxy, model_calls):
    part = settled(pipeline, model_calls)
    key = sorted(keys_of(pipeline, part))[1]
    others = [im.data for product in pipeline.products for im in product.images if im.key != key]
    listed, read = others[0], others[-1]
    s3, bucket = pipeline.res["images"].client(), pipeline.settings.s3_bucket
    s3.put_object(Bucket=bucket, Key=key, Body=listed)
    run(pipeline, part, [AssetKey("image_inventory")])
    listed_etag = image_rows(pipeline, part)[key]["etag"]
    s3.put_object(Bucket=bucket, Key=key, Body=read)  # after the listing, before the analysis reads it

    meta = run(pipeline, part, ANALYSIS_ONLY)
    assert len(model_calls) == 1 and model_calls[0] == read
    row = image_rows(pipeline, part)[key]
    assert (row["status"], row["content_hash"], row["analysed_hash"]) == ("analysed", sha256(read), sha256(read))
    assert row["etag"] == listed_etag  # what the inventory saw: the next one notices the newer object
    assert meta["search_index"]["indexed"] == 1
    doc = pipeline.res["opensearch"].client().get(index=pipeline.res["opensearch"].alias, id=str(row["image_id"]))
    assert doc["_source"]["analysed_at"] == row["analysed_at"].isoformat()

    meta = run(pipeline, part)  # the inventory sees the new ETag; the bytes read again are those analysed
    assert meta["image_inventory"]["changed"] == 1 and len(model_calls) == 1
    assert meta["search_index"]["indexed"] == 0
    again = image_rows(pipeline, part)[key]
    assert again == row | {"etag": s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')}


def test_product_data_changed_in_the_feed_reaches_the_index(pipeline, proxy, model_calls):
    part = settled(pipeline, model_calls)
    product = next(p for p in pipeline.products if any(im.key in keys_of(pipeline, part) for im in p.images))
    renamed = [dataclasses.replace(p, name="Renamed in the feed") if p is product else p for p in pipeline.products]
    feed_key = pipeline.res["images"].feed_key
    pipeline.res["images"].client().put_object(Bucket=pipeline.settings.s3_bucket, Key=feed_key,
                                               Body=feed_jsonl(renamed))
    try:
        meta = run(pipeline, part)
        assert model_calls == []
        ids = [r["image_id"] for k, r in image_rows(pipeline, part).items()
               if k in {im.key for im in product.images}]
        assert meta["search_index"]["indexed"] == len(ids) > 0
        client, alias = pipeline.res["opensearch"].client(), pipeline.res["opensearch"].alias
        assert {client.get(index=alias, id=str(i))["_source"]["product_name"] for i in ids} == {
            "Renamed in the feed"}
    finally:
        pipeline.res["images"].client().put_object(Bucket=pipeline.settings.s3_bucket, Key=feed_key,
                                                   Body=feed_jsonl(pipeline.products))


def test_a_deleted_image_is_removed_from_the_index_once(pipeline, proxy, model_calls):
    part = settled(pipeline, model_calls)
    key = sorted(keys_of(pipeline, part))[-1]
    pipeline.res["images"].client().delete_object(Bucket=pipeline.settings.s3_bucket, Key=key)
    meta = run(pipeline, part)
    assert (meta["image_inventory"]["deleted"], meta["search_index"]["removed"]) == (1, 1)
    meta = run(pipeline, part)
    assert (meta["search_index"]["indexed"], meta["search_index"]["removed"]) == (0, 0)
    image_id = image_rows(pipeline, part)[key]["image_id"]
    assert not pipeline.res["opensearch"].client().exists(index=pipeline.res["opensearch"].alias, id=str(image_id))
