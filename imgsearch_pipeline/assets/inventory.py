"""S3 listing of one prefix -> products and product_images rows in Postgres."""


from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from imgsearch_pipeline.assets.analysis import BACKFILL
from imgsearch_pipeline.inventory import take_inventory
from imgsearch_pipeline.partitions import image_prefixes
from imgsearch_pipeline.resources import ImageStoreResource, PostgresResource


@asset(
    partitions_def=image_prefixes,
    kinds={"s3", "postgres"},
    group_name="ingest",
    backfill_policy=BACKFILL,
    description="Every image under the partition's S3 prefix, its product and content hash (new/changed/deleted).",
)
def image_inventory(
    context: AssetExecutionContext, postgres: PostgresResource, images: ImageStoreResource
) -> MaterializeResult:
    catalog = images.catalog()
    for error in catalog.errors[:20]:
        context.log.warning(f"feed row rejected: {error}")
    totals = dict.fromkeys(("listed", "new", "changed", "unchanged", "deleted", "unattributed"), 0)
    with postgres.connect() as conn:
        for key in context.partition_keys:  # one prefix, or a backfill's range of them
            result = take_inventory(conn, images.client(), images.bucket, key, catalog, images.products_from_keys())
            for unattributed in result.unattributed[:20]:
                context.log.warning(f"no product for {unattributed!r} (not in the feed, key pattern does not match)")
            d = result.diff
            for name, n in (("listed", result.listed), ("new", d.new), ("changed", d.changed),
                            ("unchanged", d.unchanged), ("deleted", d.deleted),
                            ("unattributed", len(result.unattributed))):
                totals[name] += n
    return MaterializeResult(metadata={
        **totals,
        "feed_errors": len(catalog.errors),
        "prefix": MetadataValue.text(", ".join(context.partition_keys)),
    })
