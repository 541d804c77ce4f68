"""Jobs: ingest a prefix partition end to end, and rebuild the search index from Postgres alone."""


import time
from collections.abc import Iterator

from dagster import AssetSelection, OpExecutionContext, define_asset_job, job, op

from imgsearch_pipeline.assets.checks import CATALOGUE_CHECKS
from imgsearch_pipeline.resources import AnalysisProviderResource, OpenSearchResource, PostgresResource
from imgsearch_pipeline.storage import opensearch as osx
from imgsearch_pipeline.storage import postgres as pg

# Runs that call the analysis provider share a quota (dagster.yaml: tag_concurrency_limits on this tag).
PROVIDER_TAGS = {"imgsearch/provider": "analysis"}
# Whole-catalogue checks would race with concurrent partition runs: they run from their own job and schedule.
PARTITION_SCOPE = AssetSelection.groups("ingest", "analysis", "search") - AssetSelection.checks(*CATALOGUE_CHECKS)

ingest_job = define_asset_job(
    "ingest_partition",
    selection=PARTITION_SCOPE,
    tags=PROVIDER_TAGS,
    description="Inventory, analyse and index one S3 prefix.",
)

backfill_job = define_asset_job(
    "backfill",
    selection=PARTITION_SCOPE,
    tags=PROVIDER_TAGS,
    config={"ops": {"image_attributes_and_embeddings": {"config": {"batch_inference": True}}}},
    description="The one-time backfill: launch it over many prefixes; runs take up to 8 prefixes each "
                "(BackfillPolicy) and use the provider's batch path (Bedrock Batch Inference; builtin: chunked).",
)

replay_failures_job = define_asset_job(
    "replay_failures",
    selection=AssetSelection.groups("analysis", "search") - AssetSelection.checks(*CATALOGUE_CHECKS),
    tags=PROVIDER_TAGS,
    config={"ops": {"image_attributes_and_embeddings": {"config": {"replay_failed": True}}}},
    description="Retry a partition's images that failed permanently (after a fix), then re-index it.",
)


@op(description="Fill a new index generation from Postgres (no model call) and swap the alias onto it.")
def rebuild_search_index(
    context: OpExecutionContext,
    postgres: PostgresResource,
    opensearch: OpenSearchResource,
    analysis: AnalysisProviderResource,
) -> None:
    provider = analysis.get()
    client = opensearch.client()
    with postgres.connect() as conn:
        pg.ensure_vector_indexes(conn, provider.model_version, provider.image_dim, provider.text_dim)
        expected = pg.count_index_rows(conn, provider.model_version)
        complete = pg.images_missing_version(conn, provider.model_version) == 0
        context.log.info(f"rebuilding from {expected} analysed images ({provider.model_version})")
        rows = _progress(pg.iter_index_rows(conn, provider.model_version), expected, context)
        name, indexed = osx.rebuild(client, opensearch.alias, opensearch.index_base(provider.model_version),
                                    provider.image_dim, provider.text_dim, rows, take_alias=complete)
    context.log.info(f"index {name} holds {indexed} documents; alias {opensearch.alias} -> "
                     f"{osx.alias_target(client, opensearch.alias)}")
    if indexed != expected:
        raise RuntimeError(f"rebuild indexed {indexed} documents but Postgres holds {expected}")


def _progress(rows: Iterator[dict], expected: int, context: OpExecutionContext, every: int = 10_000) -> Iterator[dict]:
    """Pass rows through, logging how far the rebuild has come (visible live in the run's log)."""
    started = time.monotonic()
    n = 0
    for n, row in enumerate(rows, start=1):
        if n % every == 0:
            rate = n / max(time.monotonic() - started, 1e-6)
            context.log.info(f"rebuild progress: {n}/{expected} documents ({100 * n / max(expected, 1):.0f}%, "
                             f"{rate:.0f} docs/s)")
        yield row
    context.log.info(f"rebuild progress: {n}/{expected} documents read from Postgres")


@job(description="Rebuild the OpenSearch index from Postgres alone, without re-running any model.")
def rebuild_index_job():
    rebuild_search_index()
