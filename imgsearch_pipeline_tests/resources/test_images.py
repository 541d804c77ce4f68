"""The image store resource against a real (moto) S3 server: partitions and both feed locations."""

from imgsearch_pipeline.definitions import build_resources


def test_partition_of(settings):
    images = build_resources(settings)["images"]
    assert images.partition_of("catalog/women/dress/p1/1.jpg") == "catalog/women/dress/"
    assert images.partition_of("catalog/women/dress.jpg") is None
    assert images.partition_of("elsewhere/women/dress/p1/1.jpg") is None


def test_feed_from_bucket_from_disk_or_absent(settings, tmp_path):
    images = build_resources(settings)["images"]
    client = images.client()
    client.create_bucket(Bucket=settings.s3_bucket)
    assert images.catalog().products == {}  # no feed object: products come from the key pattern
    client.put_object(Bucket=settings.s3_bucket, Key=images.feed_key, Body=b'{"product_id": "s3p"}\n')
    assert list(images.catalog().products) == ["s3p"]
    local = tmp_path / "feed.csv"
    local.write_text("product_id,name\ndiskp,Disk product\n")
    from_disk = images.model_copy(update={"feed_key": f"file://{local}"})
    assert from_disk.catalog().products["diskp"].name == "Disk product"
