"""S3 answers errors, drops connections, or loses objects between the listing and the read.

The pipeline reaches the (real, moto) S3 server through a fault-injecting proxy; boto retries with a small
attempt budget so that persistent faults end quickly. Transient faults are absorbed by retries; persistent
ones become failed images whose reason names S3, retryable, analysed by the next run; an object that vanishes
is recorded and then marked deleted. Nothing is left pending and nothing is stuck: there is no "processing"
state, an image is pending, analysed, failed or deleted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dagster import AssetKey, instance_for_test

from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline.storage.s3 import make_client
from imgsearch_pipeline_tests.faults.proxy import DROP, Answer, FaultProxy, Request, proxy_to
from imgsearch_pipeline_tests.faults.support import assert_partition_complete, index_documents, read_s3_through
from imgsearch_pipeline_tests.harness import Pipeline

TRANSIENT, PERSISTENT, DELETED, VANISHING = (
    "catalog/men/t-shirt/", "catalog/women/dress/", "catalog/women/skirt/", "catalog/women/top/")
RETRIES = 2  # boto's retries after a failed request (dagster-aws' max_attempts; default 5, backoff up to 20 s)
SLOW_DOWN = Answer(503, b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>")
INTERNAL = Answer(500, b"<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>")


@pytest.fixture(scope="module")
def proxy(s3_server) -> Iterator[FaultProxy]:
    with proxy_to(s3_server) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def pipeline(new_settings, proxy) -> Iterator[Pipeline]:
    """The catalogue is uploaded directly; every run then reaches S3 through the proxy."""
    with instance_for_test() as instance:
        p = Pipeline(new_settings(), instance, n_products=10, seed=3)
        read_s3_through(p, proxy.url, max_attempts=RETRIES)
        yield p


@pytest.fixture(autouse=True)
def no_faults(proxy) -> Iterator[None]:
    yield
    proxy.fault = lambda _request: None


def _inventory_only(p: Pipeline, partition: str) -> None:
    """Take the partition's inventory alone: the objects are listed and pending, not read yet."""
    assert p.defs.resolve_job_def("ingest_partition").execute_in_process(
        partition_key=partition, instance=p.instance, asset_selection=[AssetKey("image_inventory")]).success


def _keys(p: Pipeline, partition: str) -> list[str]:
    return sorted(i.key for product in p.products for i in product.images
                  if p.res["images"].partition_of(i.key) == partition)


def _object_path(p: Pipeline, key: str) -> str:
    return f"/{p.settings.s3_bucket}/{key}"


def _failures(p: Pipeline, partition: str) -> dict[str, dict]:
    with p.db() as conn:
        return {r["s3_key"]: r for r in pg.list_failures(conn, partition)}


def test_transient_errors_and_dropped_connections_are_absorbed_by_retries(pipeline, proxy):
    failed_last: set[tuple[str, str]] = set()
    injected: list[Request] = []

    def first_attempt_fails(request: Request):
        """Every request fails once (503 SlowDown or a dropped connection), its retry goes through."""
        attempt = (request.method, request.path)
        if attempt in failed_last:
            failed_last.discard(attempt)
            return None
        failed_last.add(attempt)
        injected.append(request)
        return SLOW_DOWN if len(injected) % 2 else DROP

    proxy.fault = first_attempt_fails
    pipeline.run([TRANSIENT])
    n = len(_keys(pipeline, TRANSIENT))
    reads = [r for r in injected if r.method == "GET" and TRANSIENT in r.path and "list-type" not in r.path]
    assert len(reads) == n  # each image failed once, on its only read (the analysis'; the inventory reads none)
    assert_partition_complete(pipeline, TRANSIENT, n)
    assert _failures(pipeline, TRANSIENT) == {}


def test_persistent_errors_become_retryable_failures_naming_s3_and_the_next_run_analyses_them(pipeline, proxy):
    keys = _keys(pipeline, PERSISTENT)
    broken = {_object_path(pipeline, k) for k in keys[:2]}
    _inventory_only(pipeline, PERSISTENT)
    seen = len(proxy.requests)
    proxy.fault = lambda request: INTERNAL if request.method == "GET" and request.path in broken else None
    pipeline.run([PERSISTENT])  # the run succeeds: the failures are recorded, not raised

    for path in broken:  # retried by boto, then given up: no endless retrying, no request storm
        assert sum(1 for r in proxy.requests[seen:] if r.method == "GET" and r.path == path) == 1 + RETRIES
    failures = _failures(pipeline, PERSISTENT)
    assert set(failures) == set(keys[:2])
    for failure in failures.values():
        assert failure["retryable"] and failure["attempts"] == 1
        assert failure["error"].startswith("could not read from S3") and "InternalError" in failure["error"]
    with pipeline.db() as conn:
        assert pg.status_counts(conn, PERSISTENT) == {"analysed": len(keys) - 2, "failed": 2}
    assert len(index_documents(pipeline, PERSISTENT)) == len(keys) - 2

    proxy.fault = lambda _request: None  # S3 recovers
    pipeline.run([PERSISTENT])
    assert_partition_complete(pipeline, PERSISTENT, len(keys))
    assert _failures(pipeline, PERSISTENT) == {}


def test_object_deleted_between_inventory_and_analysis_is_recorded_then_marked_deleted(pipeline, proxy):
    keys = _keys(pipeline, DELETED)
    victim = keys[0]
    _inventory_only(pipeline, DELETED)
    s3 = make_client(pipeline.settings.s3_endpoint_url)  # the server itself, not through the proxy

    def delete_before_reading(request: Request):
        if request.method == "GET" and request.path == _object_path(pipeline, victim):
            s3.delete_object(Bucket=pipeline.settings.s3_bucket, Key=victim)
        return None

    proxy.fault = delete_before_reading
    pipeline.run([DELETED])
    failure = _failures(pipeline, DELETED)[victim]
    assert failure["retryable"] and "could not read from S3" in failure["error"] and "NoSuchKey" in failure["error"]

    proxy.fault = lambda _request: None
    pipeline.run([DELETED])  # the next inventory no longer lists it
    with pipeline.db() as conn:
        status = {r["s3_key"]: r["status"] for r in conn.execute(
            "SELECT s3_key, status FROM product_images WHERE partition_key = %s", (DELETED,))}
    assert status == {victim: "deleted", **dict.fromkeys(keys[1:], "analysed")}  # nothing left pending
    assert _failures(pipeline, DELETED) == {}  # the dead letter of a deleted image is not listed
    assert {d["s3_key"] for d in index_documents(pipeline, DELETED).values()} == set(keys[1:])


def test_a_new_object_deleted_between_listing_and_its_read_fails_without_a_hash_then_is_marked_deleted(
        pipeline, proxy):
    keys = _keys(pipeline, VANISHING)
    victim = keys[0]
    s3 = make_client(pipeline.settings.s3_endpoint_url)

    def delete_before_reading(request: Request):
        if request.method == "GET" and request.path == _object_path(pipeline, victim):
            s3.delete_object(Bucket=pipeline.settings.s3_bucket, Key=victim)
        return None

    proxy.fault = delete_before_reading
    pipeline.run([VANISHING])  # one run: listed, never read, so never hashed; not a crash
    failure = _failures(pipeline, VANISHING)[victim]
    assert failure["retryable"] and "NoSuchKey" in failure["error"]
    with pipeline.db() as conn:
        rows = {r["s3_key"]: r for r in conn.execute(
            "SELECT s3_key, status, content_hash FROM product_images WHERE partition_key = %s", (VANISHING,))}
    assert (rows[victim]["status"], rows[victim]["content_hash"]) == ("failed", None)
    assert {k: r["status"] for k, r in rows.items() if k != victim} == dict.fromkeys(keys[1:], "analysed")
    assert {d["s3_key"] for d in index_documents(pipeline, VANISHING).values()} == set(keys[1:])

    proxy.fault = lambda _request: None
    pipeline.run([VANISHING])
    with pipeline.db() as conn:
        assert pg.status_counts(conn, VANISHING) == {"analysed": len(keys) - 1, "deleted": 1}
    assert _failures(pipeline, VANISHING) == {}
