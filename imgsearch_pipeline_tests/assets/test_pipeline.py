"""The whole asset graph on real Postgres, S3 and OpenSearch, over a small generated catalogue."""

from __future__ import annotations

import pytest
from dagster import instance_for_test

from imgsearch_pipeline.storage import opensearch as osx
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline_tests.harness import Pipeline


@pytest.fixture(scope="module")
def pipeline(new_settings):
    with instance_for_test() as instance:
        p = Pipeline(new_settings(), instance)
        p.run()
        yield p


def test_every_image_is_analysed_and_indexed(pipeline):
    snap = pipeline.snapshot()
    assert snap["images"] == pipeline.n_images
    assert len(snap["analyses"]) == pipeline.n_images
    assert snap["docs"] == pipeline.n_images
    assert snap["products"] == len(pipeline.products)
    with pipeline.db() as conn:
        assert pg.status_counts(conn) == {"analysed": pipeline.n_images}
        row = conn.execute("SELECT * FROM image_analysis LIMIT 1").fetchone()
    assert row["model_version"] and row["vocab_version"] and row["description"]
    assert len(row["image_embedding"].to_list()) == 1280 and len(row["text_embedding"].to_list()) == 384


def test_rematerializing_changes_nothing(pipeline):
    before = pipeline.snapshot()
    pipeline.run()
    after = pipeline.snapshot()
    assert after == before  # same rows, same hashes, same analysed_at (nothing re-analysed), same documents


def test_changed_image_is_reanalysed(pipeline):
    before = pipeline.snapshot()
    victim = pipeline.products[0].images[0]
    donor = next(p for p in pipeline.products if p.colors[0] != pipeline.products[0].colors[0])
    client = pipeline.res["images"].client()
    client.put_object(Bucket=pipeline.settings.s3_bucket, Key=victim.key, Body=donor.images[0].data)
    part = pipeline.res["images"].partition_of(victim.key)
    pipeline.run([part])
    after = pipeline.snapshot()
    with pipeline.db() as conn:
        image_id = conn.execute("SELECT image_id FROM product_images WHERE s3_key = %s",
                                (victim.key,)).fetchone()["image_id"]
        stored = conn.execute("SELECT colors FROM image_analysis WHERE image_id = %s", (image_id,)).fetchone()
    assert after["analyses"][image_id][0] != before["analyses"][image_id][0]
    assert after["analyses"][image_id][1] > before["analyses"][image_id][1]
    unchanged = {k: v for k, v in after["analyses"].items() if k != image_id}
    assert unchanged == {k: v for k, v in before["analyses"].items() if k != image_id}
    assert after["docs"] == before["docs"]
    doc = pipeline.res["opensearch"].client().get(index=pipeline.res["opensearch"].alias, id=str(image_id))
    assert doc["_source"]["colors"] == stored["colors"]


def test_index_is_rebuilt_from_postgres_alone(pipeline, monkeypatch):
    expected = pipeline.snapshot()["docs"]
    client = pipeline.res["opensearch"].client()
    alias = pipeline.res["opensearch"].alias
    client.indices.delete(index=osx.alias_target(client, alias))
    assert not client.indices.exists_alias(name=alias)

    provider = pipeline.res["analysis"].get()

    def no_model(*_a, **_k):
        raise AssertionError("the rebuild must not call the model")

    monkeypatch.setattr(provider, "analyse", no_model)
    monkeypatch.setattr(provider, "embed_text", no_model)
    result = pipeline.defs.resolve_job_def("rebuild_index_job").execute_in_process(instance=pipeline.instance)
    assert result.success
    assert pipeline.doc_count() == expected
    monkeypatch.undo()
    hits = pipeline.res["search"].search("t-shirt", size=5).hits
    assert hits and all(h.attributes.category == "t-shirt" for h in hits)


NEGATIONS = [
    ("green t shirt with no prints", lambda a: a["has_print"] is not False),
    ("t-shirts without print", lambda a: a["has_print"] is not False),
    ("dress that is not black", lambda a: "black" in a["colors"]),
    ("t-shirt that isn't striped", lambda a: a["pattern"] == "striped"),
    ("non-floral dresses", lambda a: a["pattern"] == "floral"),
    ("anything but red", lambda a: {"red", "maroon"} & set(a["colors"])),
    ("blue but not navy", lambda a: "navy" in a["colors"]),
]


@pytest.mark.parametrize(("query", "violates"), NEGATIONS, ids=[q for q, _ in NEGATIONS])
def test_negation_never_returns_the_negated_attribute(pipeline, query, violates):
    response = pipeline.res["search"].search(query, size=50)
    assert response.plan.exclude or response.plan.has_print is False
    ids = [int(h.image_id) for h in response.hits]
    assert ids, "the catalogue has items for every query here: an empty answer proves nothing"
    with pipeline.db() as conn:  # judged on what Postgres stores, not on what the index returned
        stored = {r["image_id"]: r for r in conn.execute(
            "SELECT image_id, colors, pattern, has_print FROM image_analysis WHERE image_id = ANY(%s)", (ids,))}
    assert len(stored) == len(ids)
    assert not [i for i in ids if violates(stored[i])], query


def test_one_hit_per_product(pipeline):
    hits = pipeline.res["search"].search("shirt", size=50).hits
    products = [h.product_id for h in hits]
    assert len(products) == len(set(products))


@pytest.mark.parametrize("query", ["red and not red", "printed t-shirt with no prints", "maroon dress, not red"])
def test_contradictory_queries_return_nothing_and_say_why(pipeline, query):
    response = pipeline.res["search"].search(query)
    assert response.hits == [] and response.total_products == 0
    assert any("contradiction" in w for w in response.plan.warnings)


def test_broken_image_is_recorded_not_retried_then_replayed_and_fixed(pipeline):
    product = pipeline.products[2]
    key = product.images[0].key.rsplit("/", 1)[0] + "/9.jpg"
    part = pipeline.res["images"].partition_of(key)
    client = pipeline.res["images"].client()
    client.put_object(Bucket=pipeline.settings.s3_bucket, Key=key, Body=b"%PDF-1.4 this is not a photo")

    def failure():
        with pipeline.db() as conn:
            return {r["s3_key"]: r for r in pg.list_failures(conn, part)}.get(key)

    pipeline.run([part])
    first = failure()
    assert first and not first["retryable"] and first["attempts"] == 1 and "not an image" in first["error"]
    pipeline.run([part])  # an ordinary run leaves a permanent failure alone
    assert failure()["attempts"] == 1
    replay = pipeline.defs.resolve_job_def("replay_failures")
    assert replay.execute_in_process(partition_key=part, instance=pipeline.instance).success
    assert failure()["attempts"] == 2

    client.put_object(Bucket=pipeline.settings.s3_bucket, Key=key, Body=product.images[0].data)  # fixed upload
    pipeline.run([part])
    assert failure() is None
    with pipeline.db() as conn:
        row = conn.execute("SELECT image_id, status FROM product_images WHERE s3_key = %s", (key,)).fetchone()
    assert row["status"] == "analysed"
    assert pipeline.res["opensearch"].client().exists(index=pipeline.res["opensearch"].alias, id=str(row["image_id"]))


def test_keys_with_spaces_and_unicode(pipeline):
    product = pipeline.products[3]
    folder = product.images[0].key.rsplit("/", 2)[0]
    keys = [f"{folder}/été 2026 (ß)/front view.jpg", f"{folder}/商品 1/ 1+1=2.jpg"]
    client = pipeline.res["images"].client()
    for key in keys:
        client.put_object(Bucket=pipeline.settings.s3_bucket, Key=key, Body=product.images[0].data)
    pipeline.run([pipeline.res["images"].partition_of(keys[0])])
    with pipeline.db() as conn:
        rows = conn.execute("SELECT s3_key, product_id, status FROM product_images WHERE s3_key = ANY(%s)",
                            (keys,)).fetchall()
    assert sorted((r["s3_key"], r["product_id"], r["status"]) for r in rows) == sorted(
        [(keys[0], "été 2026 (ß)", "analysed"), (keys[1], "商品 1", "analysed")])


def test_deleted_object_leaves_postgres_and_index(pipeline):
    victim = pipeline.products[1].images[-1]
    pipeline.res["images"].client().delete_object(Bucket=pipeline.settings.s3_bucket, Key=victim.key)
    pipeline.run([pipeline.res["images"].partition_of(victim.key)])
    with pipeline.db() as conn:
        row = conn.execute("SELECT image_id, status FROM product_images WHERE s3_key = %s", (victim.key,)).fetchone()
    assert row["status"] == "deleted"
    client = pipeline.res["opensearch"].client()
    assert not client.exists(index=pipeline.res["opensearch"].alias, id=str(row["image_id"]))
