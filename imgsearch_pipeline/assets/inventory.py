"""S3 listing of one prefix -> products and product_images rows in Postgres."""


from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from imgsearch_pipeline.assets.analysis import BACKFILL
from imgsearch_pipeline.inventory import take_inventory
from imgsearch_pipeline.partitions import image_prefixes, partition_key_problem
from imgsearch_pipeline.resources import ImageStoreResource, PostgresResource


@asset(
    partitions_def=image_prefixes,
    kinds={"s3", "postgres"},
    group_name="ingest",
    backfill_policy=BACKFILL,
    description="Every image under the partition's S3 prefix, its product, ETag and size (new/changed/deleted).",
)
def image_inventory(
    context: AssetExecutionContext, postgres: PostgresResource, images: ImageStoreResource
) -> MaterializeResult:
    catalog = images.catalog()
    for error in catalog.errors[:20]:
        context.log.warning(f"feed row rejected: {error}")
    # A partition added by hand (the UI, the API) skips the sensor's check of the prefix.
    for key in context.partition_keys:
        if problem := partition_key_problem(key):
            raise Failure(f"partition {key!r} is not a usable prefix: {problem}")
    totals = dict.fromkeys(("listed", "new", "changed", "unchanged", "deleted", "unattributed", "rejected"), 0)
    rejected: list[str] = []
    with postgres.connect() as conn:
        for key in context.partition_keys:  # one prefix, or a backfill's range of them
            result = take_inventory(conn, images.client(), images.bucket, key, catalog, images.products_from_keys())
            for unattributed in result.unattributed[:20]:
                context.log.warning(f"no product for {unattributed!r} (not in the feed, key pattern does not match)")
            for bad, why in list(result.rejected.items())[:20]:
                context.log.warning(f"not ingested: {bad!r}: {why}")
            rejected += [f"{why}: {bad!r}" for bad, why in result.rejected.items()]
            d = result.diff
            for name, n in (("listed", result.listed), ("new", d.new), ("changed", d.changed),
                            ("unchanged", d.unchanged), ("deleted", d.deleted),
                            ("unattributed", len(result.unattributed)), ("rejected", len(result.rejected))):
                totals[name] += n
    return MaterializeResult(metadata={
        **totals,
        "feed_errors": len(catalog.errors),
        "prefix": MetadataValue.text(", ".join(context.partition_keys)),
        **({"rejected_keys": MetadataValue.md("\n".join(f"- {r[:300]}" for r in rejected[:20]))} if rejected else {}),
    })
