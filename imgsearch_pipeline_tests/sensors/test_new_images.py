"""The S3 sensor on a real (moto) S3 server, evaluated with Dagster's own sensor test API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dagster import DagsterInstance, SensorResult, build_sensor_context

from imgsearch_pipeline.definitions import build_definitions
from imgsearch_pipeline.sensors.new_images import ListingCursor, new_images_sensor, plan_ticks
from imgsearch_pipeline.storage.s3 import S3Object, ensure_bucket

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _obj(key: str, seconds: int) -> S3Object:
    return S3Object(key=key, etag=key, size=1, last_modified=T0 + timedelta(seconds=seconds))


def test_cursor_sees_same_timestamp_objects_exactly_once(settings):
    images = build_definitions(settings).resources["images"]
    a, b = _obj("catalog/men/shirt/p1/1.jpg", 10), _obj("catalog/men/shirt/p1/2.jpg", 10)
    plan, cursor = plan_ticks([a], ListingCursor(), images)
    assert plan.partitions == ["catalog/men/shirt/"]
    # b arrives with the same LastModified after the first tick: still new, a is not repeated.
    plan, cursor = plan_ticks([a, b], cursor, images)
    assert [o.key for o in plan.changed["catalog/men/shirt/"]] == [b.key]
    plan, cursor2 = plan_ticks([a, b], cursor, images)
    assert plan.partitions == [] and cursor2 == cursor
    # A re-written key has a newer LastModified: seen again.
    a2 = _obj(a.key, 20)
    plan, _ = plan_ticks([a2, b], cursor, images)
    assert [o.key for o in plan.changed["catalog/men/shirt/"]] == [a.key]


def test_what_postgres_already_holds_is_not_new_and_missing_keys_are_deletions(settings):
    images = build_definitions(settings).resources["images"]
    a, b = _obj("catalog/men/shirt/p1/1.jpg", 10), _obj("catalog/women/dress/d1/1.jpg", 10)
    known = {a.key: a.etag, b.key: "an older etag", "catalog/men/tie/t1/1.jpg": "gone"}
    plan, cursor = plan_ticks([a, b], ListingCursor(), images, known)
    assert {p: [o.key for o in objs] for p, objs in plan.changed.items()} == {"catalog/women/dress/": [b.key]}
    assert plan.deleted == {"catalog/men/tie/": ["catalog/men/tie/t1/1.jpg"]}
    assert plan.partitions == ["catalog/men/tie/", "catalog/women/dress/"] and cursor.last_modified == a.last_modified


def test_keys_outside_the_catalogue_are_ignored(settings):
    images = build_definitions(settings).resources["images"]
    plan, _ = plan_ticks([_obj("feeds/x.jpg", 1), _obj("catalog/short.jpg", 1)], ListingCursor(), images)
    assert plan.partitions == []


def test_sensor_adds_partitions_and_requests_runs(settings):
    defs = build_definitions(settings)
    images = defs.resources["images"]
    res = {"images": images, "postgres": defs.resources["postgres"]}
    client = images.client()
    ensure_bucket(client, settings.s3_bucket)
    for key in ["catalog/women/dress/d1/1.jpg", "catalog/women/dress/d1/2.jpg", "catalog/men/t-shirt/t1/1.jpg"]:
        client.put_object(Bucket=settings.s3_bucket, Key=key, Body=b"x")
    instance = DagsterInstance.ephemeral()
    with build_sensor_context(instance=instance, resources=res) as ctx:
        result = new_images_sensor(ctx)
    assert isinstance(result, SensorResult)
    assert sorted(r.partition_key for r in result.run_requests) == ["catalog/men/t-shirt/", "catalog/women/dress/"]
    added = result.dynamic_partitions_requests[0]
    assert sorted(added.partition_keys) == ["catalog/men/t-shirt/", "catalog/women/dress/"]
    # Next tick with the new cursor: nothing new, so no runs.
    instance.add_dynamic_partitions("image_prefixes", list(added.partition_keys))
    with build_sensor_context(instance=instance, resources=res, cursor=result.cursor) as ctx2:
        assert not new_images_sensor(ctx2).run_requests
    client.put_object(Bucket=settings.s3_bucket, Key="catalog/women/dress/d2/1.jpg", Body=b"y")
    with build_sensor_context(instance=instance, resources=res, cursor=result.cursor) as ctx3:
        result3 = new_images_sensor(ctx3)
    assert [r.partition_key for r in result3.run_requests] == ["catalog/women/dress/"]
    assert result3.dynamic_partitions_requests == []


def test_an_ingested_catalogue_causes_no_runs_and_a_deletion_causes_one(new_settings):
    from dagster import instance_for_test

    from imgsearch_pipeline_tests.harness import Pipeline

    with instance_for_test() as instance:
        pipeline = Pipeline(new_settings(), instance, n_products=4, seed=9)
        pipeline.run()
        res = {"images": pipeline.res["images"], "postgres": pipeline.res["postgres"]}
        with build_sensor_context(instance=instance, resources=res) as ctx:
            first = new_images_sensor(ctx)  # a sensor switched on after the demo's own ingest
        assert first.run_requests == [] and first.cursor
        victim = pipeline.products[0].images[0].key
        pipeline.res["images"].client().delete_object(Bucket=pipeline.settings.s3_bucket, Key=victim)
        with build_sensor_context(instance=instance, resources=res, cursor=first.cursor) as ctx:
            second = new_images_sensor(ctx)
        [request] = second.run_requests
        assert request.partition_key == pipeline.res["images"].partition_of(victim)
        assert request.tags["imgsearch/deleted_objects"] == "1"
