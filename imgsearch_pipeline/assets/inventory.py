"""S3 listing of one prefix -> products and product_images rows in Postgres."""


from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from imgsearch_pipeline.inventory import take_inventory
from imgsearch_pipeline.partitions import image_prefixes
from imgsearch_pipeline.resources import ImageStoreResource, PostgresResource


@asset(
    partitions_def=image_prefixes,
    kinds={"s3", "postgres"},
    group_name="ingest",
    description="Every image under the partition's S3 prefix, its product and content hash (new/changed/deleted).",
)
def image_inventory(
    context: AssetExecutionContext, postgres: PostgresResource, images: ImageStoreResource
) -> MaterializeResult:
    catalog = images.catalog()
    for error in catalog.errors[:20]:
        context.log.warning(f"feed row rejected: {error}")
    with postgres.connect() as conn:
        result = take_inventory(conn, images.client(), images.bucket, context.partition_key, catalog,
                                images.products_from_keys())
    for key in result.unattributed[:20]:
        context.log.warning(f"no product for {key!r} (not in the feed, key pattern does not match)")
    d = result.diff
    return MaterializeResult(metadata={
        "listed": result.listed,
        "new": d.new,
        "changed": d.changed,
        "unchanged": d.unchanged,
        "deleted": d.deleted,
        "unattributed": len(result.unattributed),
        "feed_errors": len(catalog.errors),
        "prefix": MetadataValue.text(context.partition_key),
    })
