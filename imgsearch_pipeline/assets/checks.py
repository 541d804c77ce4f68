"""Asset checks: analysis coverage, vocabulary, embeddings (per partition), index consistency and orphans
(whole catalogue). The measurements live in `imgsearch_pipeline.storage.checks`; here they get a verdict,
a severity and metadata for the UI.

How they run (Dagster 1.13):
- Any job that selects an asset also runs its checks, so `ingest_partition` and `replay_failures` run all of
  them after the asset they target.
- The per-partition checks declare `partitions_def=image_prefixes` (a preview feature in 1.13). In a run of one
  partition they check that partition and the result is recorded for it (AssetCheckEvaluation.partition). In a
  backfill run over a range of partitions (BackfillPolicy) they check every partition of the range, but 1.13
  records that single result without a partition (one AssetCheckResult per step, no per-partition results).
  They need a partition or a range: Dagster itself fails such a check's step in a run without one.
- The whole-catalogue checks are unpartitioned: in a partitioned run they still run (once) over everything, and
  `catalogue_checks_job` runs them alone, without a partition (from the launchpad or a schedule).
- A blocking check failing with ERROR severity fails its step, and the assets downstream of the checked asset
  are not materialized in that run: bad values never reach the search index.
"""

import warnings

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetSelection,
    MetadataValue,
    PreviewWarning,
    asset_check,
    define_asset_job,
)

from imgsearch_pipeline.partitions import image_prefixes
from imgsearch_pipeline.resources import AnalysisProviderResource, OpenSearchResource, PostgresResource
from imgsearch_pipeline.storage import checks as sc
from imgsearch_pipeline.vocab import get_vocabulary

# Partitioned asset checks are a preview in 1.13 and warn once per definition; we rely on them knowingly.
warnings.filterwarnings("ignore", message=r".*partitions_def on an AssetCheckSpec.*", category=PreviewWarning)

FAILED_SHARE_ERROR = 0.5
"""A partition where at least this share of the live images failed is an ERROR, not a WARN: that is a broken
provider or feed, not a few bad uploads."""


def _scope(keys: list[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{len(keys)} partitions ({keys[0]} .. {keys[-1]})"


@asset_check(
    asset=AssetKey("image_analysis"),
    name="analysis_coverage",
    partitions_def=image_prefixes,
    description="Live images analysed / failed / pending for the current model version.",
)
def analysis_coverage_check(
    context: AssetCheckExecutionContext, postgres: PostgresResource, analysis: AnalysisProviderResource
) -> AssetCheckResult:
    """Every live image of the partition has been dealt with by the current model version.

    - pending > 0 -> ERROR: after `image_analysis` ran, nothing should be waiting. A pending image means the
      run did not do its job (an image listed after the analysis started, a crash mid-way, a model upgrade not
      yet run), and it is invisible to search until the next run.
    - failed > 0 -> WARN: failures are recorded per image with their reason (a corrupt upload, a refusal) and
      have a way out (a replay, new bytes); one bad file must not turn the catalogue red.
    - failed >= FAILED_SHARE_ERROR of the live images -> ERROR: the provider or the feed is broken.
    Not blocking: the analysed images are still worth indexing.
    """
    provider = analysis.get()
    keys = list(context.partition_keys)  # one prefix, or a backfill run's range
    with postgres.connect() as conn:
        r = sc.analysis_coverage(conn, provider.model_version, keys)
    if r.pending or (r.failed and r.failed_share >= FAILED_SHARE_ERROR):
        severity = AssetCheckSeverity.ERROR
    else:
        severity = AssetCheckSeverity.WARN
    passed = not r.pending and not r.failed
    return AssetCheckResult(
        passed=passed,
        severity=severity,
        description=(f"{_scope(keys)}: {r.analysed} analysed, {r.failed} failed, {r.pending} pending "
                     f"of {r.live} live images"),
        metadata={
            "model_version": provider.model_version,
            "partitions": ", ".join(keys),
            "live": r.live,
            "analysed": r.analysed,
            "failed": r.failed,
            "pending": r.pending,
            "deleted": r.deleted,
            "failed_share": round(r.failed_share, 4),
            "pending_images": MetadataValue.json(r.pending_sample),
            "failed_images": MetadataValue.json(r.failed_sample),
        },
    )


@asset_check(
    asset=AssetKey("image_analysis"),
    name="values_in_vocabulary",
    partitions_def=image_prefixes,
    blocking=True,
    description="Stored category, colours, pattern and attribute values are vocabulary ids.",
)
def vocabulary_check(
    context: AssetCheckExecutionContext, postgres: PostgresResource, analysis: AnalysisProviderResource
) -> AssetCheckResult:
    """Every value the current model version stored in the partition is in `get_vocabulary()`.

    Any violation is an ERROR and blocks `search_index`: the analysis validators should make this impossible,
    so a violation means a bypassed write or a vocabulary change, and search filters would silently miss the
    item. Re-analyse (or fix the vocabulary) before indexing.
    """
    provider = analysis.get()
    keys = list(context.partition_keys)  # one prefix, or a backfill run's range
    vocab = get_vocabulary()
    with postgres.connect() as conn:
        r = sc.vocabulary_violations(conn, provider.model_version, vocab, keys)
    return AssetCheckResult(
        passed=r.passed,
        severity=AssetCheckSeverity.ERROR,
        description=f"{_scope(keys)}: {r.violations} values outside the vocabulary in {r.offending_images} "
                    f"of {r.rows} analyses",
        metadata={
            "model_version": provider.model_version,
            "vocab_version": r.vocab_version,
            "partitions": ", ".join(keys),
            "rows": r.rows,
            "violations": r.violations,
            "offending_images": r.offending_images,
            "offenders": MetadataValue.json([v.model_dump() for v in r.sample]),
        },
    )


@asset_check(
    asset=AssetKey("image_analysis"),
    name="embeddings_valid",
    partitions_def=image_prefixes,
    blocking=True,
    description="Image and text vectors have the provider's dimensions and unit norm.",
)
def embeddings_check(
    context: AssetCheckExecutionContext, postgres: PostgresResource, analysis: AnalysisProviderResource
) -> AssetCheckResult:
    """Every vector of the current model version in the partition has the provider's `image_dim` / `text_dim`
    and unit norm within `NORM_TOLERANCE` (so also: not missing, not zero, no NaN).

    ERROR and blocking: the index's knn fields have a fixed dimension (the bulk request would fail), and a zero
    or unnormalised vector makes cosine similarity meaningless.
    """
    provider = analysis.get()
    keys = list(context.partition_keys)  # one prefix, or a backfill run's range
    with postgres.connect() as conn:
        r = sc.embedding_problems(conn, provider.model_version, provider.image_dim, provider.text_dim, keys)
    return AssetCheckResult(
        passed=r.passed,
        severity=AssetCheckSeverity.ERROR,
        description=f"{_scope(keys)}: {r.bad_rows} of {r.rows} analyses have a bad vector",
        metadata={
            "model_version": provider.model_version,
            "partitions": ", ".join(keys),
            "rows": r.rows,
            "bad_rows": r.bad_rows,
            "image_dim": r.image_dim,
            "text_dim": r.text_dim,
            "tolerance": r.tolerance,
            "min_norm": r.min_norm,
            "max_norm": r.max_norm,
            "offenders": MetadataValue.json([p.model_dump() for p in r.sample]),
        },
    )


@asset_check(
    asset=AssetKey("search_index"),
    name="index_matches_postgres",
    description="OpenSearch holds exactly the live analysed images of Postgres, with the same values.",
)
def index_consistency_check(
    postgres: PostgresResource, opensearch: OpenSearchResource, analysis: AnalysisProviderResource
) -> AssetCheckResult:
    """Whole catalogue: the current model version's index has as many documents as Postgres has live analysed
    rows (in total and per partition), and random samples of ids exist on both sides with equal category and
    colours.

    ERROR, not blocking (nothing is downstream of the index). While runs of several partitions overlap, a
    partition analysed but not yet indexed shows up here until its `search_index` step has run.
    """
    provider = analysis.get()
    client = opensearch.client()
    with postgres.connect() as conn:
        r = sc.index_consistency(conn, client, opensearch.alias, opensearch.index_base(provider.model_version),
                                 provider.model_version)
    return AssetCheckResult(
        passed=r.passed,
        severity=AssetCheckSeverity.ERROR,
        description=(f"{r.postgres_count} live rows in Postgres, {r.index_count} documents in {r.index}; "
                     f"{len(r.missing_from_index)} missing, {len(r.stray_in_index)} stray, "
                     f"{len(r.mismatches)} mismatched among {r.sampled} sampled"),
        metadata={
            "model_version": provider.model_version,
            "index": str(r.index),
            "alias": r.alias,
            "alias_target": str(r.alias_target),
            "postgres_count": r.postgres_count,
            "index_count": r.index_count,
            "sampled": r.sampled,
            "partition_differences": MetadataValue.json(
                {p: {"postgres": a, "index": b} for p, (a, b) in r.partition_differences.items()}),
            "missing_from_index": MetadataValue.json(r.missing_from_index[: sc.SAMPLE]),
            "stray_in_index": MetadataValue.json(r.stray_in_index[: sc.SAMPLE]),
            "mismatches": MetadataValue.json([m.model_dump() for m in r.mismatches[: sc.SAMPLE]]),
        },
    )


@asset_check(
    asset=AssetKey("image_inventory"),
    name="no_orphans",
    description="No image without its product, no analysis or failure record without its image.",
)
def orphans_check(postgres: PostgresResource) -> AssetCheckResult:
    """Whole catalogue: every image has its product and every analysis / failure row its image.

    ERROR, not blocking: the foreign keys normally make orphans impossible, so any orphan means the constraints
    were bypassed (a restore or bulk load without triggers, a constraint re-added NOT VALID) and needs a person;
    stopping every partition's analysis would not help.
    """
    with postgres.connect() as conn:
        r = sc.orphans(conn)
    return AssetCheckResult(
        passed=r.passed,
        severity=AssetCheckSeverity.ERROR,
        description=(f"{r.images_without_product} images without product, {r.analyses_without_image} analyses "
                     f"and {r.failures_without_image} failure records without image"),
        metadata={
            "images_without_product": r.images_without_product,
            "analyses_without_image": r.analyses_without_image,
            "failures_without_image": r.failures_without_image,
            "orphan_images": MetadataValue.json(r.image_sample),
            "orphan_analysis_image_ids": MetadataValue.json(r.analysis_sample),
            "orphan_failure_image_ids": MetadataValue.json(r.failure_sample),
        },
    )


PARTITION_CHECKS = [analysis_coverage_check, vocabulary_check, embeddings_check]
CATALOGUE_CHECKS = [index_consistency_check, orphans_check]
ALL_CHECKS = [*PARTITION_CHECKS, *CATALOGUE_CHECKS]

catalogue_checks_job = define_asset_job(
    "catalogue_checks",
    selection=AssetSelection.checks(*CATALOGUE_CHECKS),
    description="Index consistency and orphans over the whole catalogue, without materializing anything.",
)
