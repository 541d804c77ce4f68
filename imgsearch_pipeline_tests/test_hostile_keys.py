"""Hostile S3 object keys: '../', control characters, 1 KB names, unicode. Safe keys are ingested and served;
unsafe ones are refused with a recorded reason and never become a partition, a row or a file outside the
frames folder."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from dagster import AssetKey, instance_for_test
from dagster_aws.s3 import S3Resource
from fastapi.testclient import TestClient
from upath import UPath

from imgsearch_pipeline.api.app import create_app
from imgsearch_pipeline.api.security import ApiSecurity
from imgsearch_pipeline.catalog import parse_feed
from imgsearch_pipeline.partitions import image_prefixes, partition_key_problem
from imgsearch_pipeline.resources.frames import _PartitionedFrames, safe_segment
from imgsearch_pipeline.resources.images import ImageStoreResource
from imgsearch_pipeline.sensors.new_images import ListingCursor, plan_ticks
from imgsearch_pipeline.storage.s3 import list_objects
from imgsearch_pipeline_tests.harness import Pipeline

BAD_PREFIXES = {
    "catalog/../../p5/1.jpg": "'..'",
    "catalog/women/../p6/1.jpg": "'..'",
    "catalog/./dress/p7/1.jpg": "'.'",
    "catalog//dress/p8/1.jpg": "empty",
    "catalog/wo\x01men/dress/p9/1.jpg": "control",
    "catalog/women/dr\x1bess/p10/1.jpg": "control",
    "catalog/women.../dress/p11/1.jpg": "'...'",
    f"catalog/{'w' * 300}/dress/p12/1.jpg": "longer",
}


def _images() -> ImageStoreResource:
    return ImageStoreResource(s3=S3Resource(endpoint_url="http://127.0.0.1:1"), bucket="unused")


def test_unsafe_prefixes_never_become_partitions(caplog):
    images = _images()
    caplog.set_level(logging.WARNING)
    for key, reason in BAD_PREFIXES.items():
        assert images.partition_of(key) is None, key
        assert reason in partition_key_problem("/".join(key.split("/")[:3]) + "/")
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == len(BAD_PREFIXES) and all("not ingesting" in m and "cannot be a partition" in m
                                                     for m in logged)
    for key in ("catalog/женщины/платье/p/1.jpg", "catalog/women/👗 dress/p/1.jpg", "catalog/a..b/c/p/1.jpg"):
        assert images.partition_of(key) == "/".join(key.split("/")[:3]) + "/"
    # The sensor's planning (pure) requests runs and partitions only for the safe prefix.
    from datetime import UTC, datetime

    from imgsearch_pipeline.storage.s3 import S3Object

    now = datetime.now(UTC)
    objects = [S3Object(k, "e", 1, now) for k in [*BAD_PREFIXES, "catalog/women/dress/p1/1.jpg"]]
    plan, _ = plan_ticks(objects, ListingCursor(), images)
    assert plan.partitions == ["catalog/women/dress/"]


def test_frames_of_any_partition_key_stay_in_their_folder(tmp_path: Path):
    manager = _PartitionedFrames(base_dir=str(tmp_path / "frames"))
    base = UPath(tmp_path / "frames" / "image_attributes")
    keys = ["catalog/../../../../etc/", "../x/", "/abs/olute/", "catalog/./x/", "catalog/x/", "catalog//x/",
            "catalog/%2E%2E/x/", "catalog/a\x00b/c/", "catalog/a\nb/c/", f"catalog/{'é' * 200}/x/",
            f"catalog/{'x' * 300}/y/", "catalog/women/dress/"]
    paths = [manager.make_safe_partition_path(base, k) for k in keys]
    root = base.resolve()
    for key, path in zip(keys, paths, strict=True):
        resolved = Path(str(path)).resolve()
        assert resolved.is_relative_to(root) and resolved != root, (key, resolved)
        assert all(len(p.encode()) <= 255 and "\x00" not in p and "\n" not in p for p in resolved.parts), key
        resolved.parent.mkdir(parents=True, exist_ok=True)
        resolved.write_bytes(b"frame")  # the filesystem accepts the name
    assert len({str(p) for p in paths}) == len(keys)  # no two keys share a file
    assert manager.make_safe_partition_path(base, "catalog/women/dress/") == base / "catalog/women/dress"
    assert safe_segment("dress") == "dress"  # ordinary keys keep the paths they always had


@pytest.fixture(scope="module")
def ingested(new_settings):
    with instance_for_test() as instance:
        pipeline = Pipeline(new_settings(), instance, n_products=2, seed=21)
        images = pipeline.res["images"]
        photo = pipeline.products[0].images[0]
        part = images.partition_of(photo.key)
        folder = photo.key.rsplit("/", 1)[0]
        long_name = f"{part}p-long/"
        accepted = [f"{part}{'é' * 120}/1.jpg",  # a 120-character product id, 240 bytes
                    f"{long_name}{'a' * (1024 - len(long_name.encode()) - 4)}.jpg",  # exactly 1,024 bytes
                    f"{part}👗 платье فستان\u200b/1.jpg", f"{part}quote'\"; DROP TABLE products; --/1.jpg"]
        rejected = {f"{folder}/../../../escape.jpg": "'..'", f"{part}p-dot/./1.jpg": "'.'",
                    f"{part}p\x01ctl/1.jpg": "control", f"{part}p-nul/\x00.jpg": "control",
                    f"{part}p-c1\x85/1.jpg": "control", f"{part}{'x' * 300}/1.jpg": "product id"}
        client = images.client()
        for key in [*accepted, *rejected, *BAD_PREFIXES]:
            client.put_object(Bucket=images.bucket, Key=key, Body=photo.data)
        listed = [o.key for o in list_objects(client, images.bucket, images.root_prefix)]
        assert set(accepted) | set(rejected) | set(BAD_PREFIXES) <= set(listed)  # S3 keeps them all
        partitions = sorted({p for k in listed if (p := images.partition_of(k))})
        instance.add_dynamic_partitions(image_prefixes.name, partitions)
        pipeline.run(partitions)
        yield pipeline, instance, partitions, accepted, rejected


def test_hostile_keys_inside_a_partition_are_ingested_or_refused_with_a_reason(ingested):
    pipeline, instance, partitions, accepted, rejected = ingested
    assert set(instance.get_dynamic_partitions(image_prefixes.name)) == set(partitions)
    assert all(partition_key_problem(p) is None for p in partitions)
    with pipeline.db() as conn:
        stored = {r["s3_key"]: r for r in conn.execute("SELECT s3_key, status FROM product_images")}
    assert set(accepted) <= set(stored) and not set(rejected) & set(stored)
    assert all(stored[k]["status"] == "analysed" for k in accepted)
    records = instance.fetch_materializations(AssetKey("image_inventory"), limit=100).records
    metadata = [r.asset_materialization.metadata for r in records]
    assert sum(m["rejected"].value for m in metadata) == len(rejected)
    notes = "\n".join(m["rejected_keys"].value for m in metadata if "rejected_keys" in m)
    for key, reason in rejected.items():
        line = next(n for n in notes.splitlines() if repr(key)[:60] in n)
        assert reason in line, line


def test_hostile_keys_are_served_by_id_only(ingested):
    pipeline, _, _, accepted, _ = ingested
    with pipeline.db() as conn:
        ids = {r["s3_key"]: r["image_id"] for r in conn.execute("SELECT s3_key, image_id FROM product_images")}
    with TestClient(create_app(lambda: pipeline.res, ApiSecurity())) as api:
        for key in accepted:
            r = api.get(f"/images/{ids[key]}", params={"w": 32})
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg", key
        for path in ("/images/..%2F..%2Fetc%2Fpasswd", "/images/catalog%2F..%2Fescape.jpg", "/images/%00"):
            assert api.get(path).status_code in (404, 422), path
        hits = api.get("/search", params={"q": "", "size": 100}).json()["hits"]
        assert set(accepted) <= {h["s3_key"] for h in hits}


def test_a_hand_made_partition_with_dots_fails_with_the_reason(ingested, tmp_path):
    pipeline, instance, *_ = ingested
    bad = "catalog/../women/"
    instance.add_dynamic_partitions(image_prefixes.name, [bad])  # Dagster itself accepts it
    job = pipeline.defs.resolve_job_def("ingest_partition")
    result = job.execute_in_process(partition_key=bad, instance=instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "not a usable prefix" in failure.step_failure_data.error.message
    assert "'..'" in failure.step_failure_data.error.message
    storage = Path(instance.storage_directory())
    assert not (storage.parent / "women").exists() and not (storage / "women").exists()


def test_a_feed_row_with_a_nul_is_a_row_error_not_a_failed_inventory():
    feed = b'{"product_id": "p1", "name": "a\\u0000b"}\n{"product_id": "p\\u0000"}\n{"product_id": "p2"}\n'
    catalog = parse_feed(feed, "catalog.jsonl")
    assert list(catalog.products) == ["p2"] and len(catalog.errors) == 2
