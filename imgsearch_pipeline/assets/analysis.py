"""Image analysis: the provider's attributes and embeddings, then their validated rows in Postgres.

One provider pass yields both `image_attributes` and `image_embeddings` (a multi-asset: the model runs once);
`image_analysis` writes them, together with failures and the hash of the bytes read, to Postgres.
"""


import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetOut,
    AutomationCondition,
    BackfillPolicy,
    Config,
    MaterializeResult,
    MetadataValue,
    Output,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
    multi_asset,
)

from imgsearch_pipeline.analysis.batch import (
    ATTRIBUTE_COLUMNS,
    EMBEDDING_COLUMNS,
    analyse_images,
    collect,
    read_batches,
    to_analyse,
)
from imgsearch_pipeline.analysis.provider import BatchTooSmall
from imgsearch_pipeline.analysis.types import ImageAnalysis
from imgsearch_pipeline.partitions import image_prefixes
from imgsearch_pipeline.resources import AnalysisProviderResource, ImageStoreResource, PostgresResource
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline.vocab import get_vocabulary

# A backfill over many prefixes runs a few partitions per run: one model session and, for Bedrock, one batch
# job serve several prefixes, while a failure still only costs a handful of partitions.
BACKFILL = BackfillPolicy.multi_run(max_partitions_per_run=8)
SAVE_CHUNK = 500  # analyses validated and written per statement batch (bounds the memory of a large partition)
READ_WORKERS = 8  # S3 reads at once


class AnalysisRunConfig(Config):
    replay_failed: bool = False
    """Also retry images whose current bytes failed permanently (the replay of the dead-letter records)."""
    batch_inference: bool = False
    """Use the provider's batch path (Bedrock Batch Inference) for the one-time backfill; others run chunked."""


# A new model version (code_version, set from the provider's model_version in definitions.py) makes every
# analysed partition stale and the automation sensor reprocesses exactly those (never-materialized partitions
# are the ingest's business, not the upgrade's); new upstream data is picked up eagerly.
REPROCESS = (AutomationCondition.code_version_changed() & ~AutomationCondition.missing()) | AutomationCondition.eager()


@multi_asset(
    outs={
        "image_attributes": AssetOut(kinds={"python", "pandas"}, group_name="analysis", automation_condition=REPROCESS,
                                     io_manager_key="frames_io_manager",
                                     description="Category, colours, pattern, print, description per image."),
        "image_embeddings": AssetOut(kinds={"python", "numpy"}, group_name="analysis", automation_condition=REPROCESS,
                                     io_manager_key="frames_io_manager",
                                     description="Image and text vectors per image."),
    },
    deps=[AssetKey("image_inventory")],
    partitions_def=image_prefixes,
    backfill_policy=BACKFILL,
)
def image_attributes_and_embeddings(
    context: AssetExecutionContext,
    config: AnalysisRunConfig,
    postgres: PostgresResource,
    images: ImageStoreResource,
    analysis: AnalysisProviderResource,
):
    provider = analysis.get()
    keys = context.partition_keys
    with postgres.connect() as conn:
        if config.replay_failed:
            for key in keys:
                released = pg.release_failures(conn, key)
                context.log.info(f"replaying recorded failures of {', '.join(released) or 'no partition'}")
        todo = [{**row, "partition_key": key} for key in keys
                for row in pg.images_to_analyse(conn, key, provider.model_version)]
    context.log.info(f"{len(todo)} images of {len(keys)} partition(s) to analyse with {provider.model_version}")
    read = images.read
    started = time.perf_counter()
    if config.batch_inference and hasattr(provider, "run_batch") and todo:
        attributes, embeddings = _batch_inference(context, provider, todo, read, images, analysis)
    else:
        attributes, embeddings = analyse_images(todo, read, provider, batch_size=analysis.batch_size,
                                                read_workers=READ_WORKERS, retry=analysis.retry_policy(),
                                                pacer=analysis.pacer(), max_in_flight=analysis.max_in_flight)
    elapsed = time.perf_counter() - started
    statuses = attributes["status"].value_counts() if len(attributes) else pd.Series(dtype=int)
    meta = {
        "analysed": int(statuses.get("analysed", 0)),
        "failed": int(statuses.get("failed", 0)),
        "unchanged": int(statuses.get("unchanged", 0)),
        "partitions": len(keys),
        "model_version": provider.model_version,
        "seconds_per_image": round(elapsed / max(1, len(todo)), 4),
        "images_per_second": round(len(todo) / max(elapsed, 1e-9), 1),
    }
    yield Output(attributes, output_name="image_attributes", metadata=meta | {"preview": _preview(attributes)})
    yield Output(embeddings, output_name="image_embeddings",
                 metadata={"vectors": len(embeddings), "image_dim": provider.image_dim, "text_dim": provider.text_dim})


def _batch_inference(context: AssetExecutionContext, provider, todo: list[dict], read: Callable[[str], bytes],
                     images: ImageStoreResource, analysis: AnalysisProviderResource
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The provider's batch path; a set below the job minimum goes through the ordinary calls instead."""
    attrs: list[dict] = []
    vecs: list[dict] = []
    reads = [r for batch in read_batches(todo, read, analysis.batch_size, READ_WORKERS)
             for r in to_analyse(batch, provider, attrs)]
    try:
        results = provider.run_batch([(str(row["image_id"]), data) for row, data in reads], images.client(),
                                     retry=analysis.retry_policy())
    except BatchTooSmall as e:
        context.log.info(f"{e}; analysing on demand instead")
        held = {row["s3_key"]: data for row, data in reads}
        attributes, embeddings = analyse_images([row for row, _ in reads], held.__getitem__, provider,
                                                batch_size=analysis.batch_size, retry=analysis.retry_policy(),
                                                pacer=analysis.pacer(), max_in_flight=analysis.max_in_flight)
        return pd.concat([pd.DataFrame(attrs, columns=ATTRIBUTE_COLUMNS), attributes], ignore_index=True), embeddings
    collect([row for row, _ in reads], [results[str(row["image_id"])] for row, _ in reads], provider, attrs, vecs)
    return pd.DataFrame(attrs, columns=ATTRIBUTE_COLUMNS), pd.DataFrame(vecs, columns=EMBEDDING_COLUMNS)


def _preview(attributes: pd.DataFrame, rows: int = 10) -> MetadataValue:
    """A few analysed rows as a table in the UI."""
    cols = ["image_id", "status", "category", "colors", "pattern", "has_print", "description", "error"]
    def cell(v) -> str:
        if isinstance(v, list):
            return ", ".join(v)
        return "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)  # pandas keeps NaN for None

    records = [TableRecord({c: cell(v) for c, v in rec.items()})
               for rec in attributes.reindex(columns=cols).head(rows).to_dict("records")]
    return MetadataValue.table(records, schema=TableSchema(columns=[TableColumn(c, "string") for c in cols]))


@asset(
    ins={"image_attributes": AssetIn(), "image_embeddings": AssetIn()},
    partitions_def=image_prefixes,
    kinds={"postgres"},
    group_name="analysis",
    automation_condition=REPROCESS,
    backfill_policy=BACKFILL,
    description="Validated analyses in Postgres (image_analysis), failures recorded on product_images.",
)
def image_analysis(
    context: AssetExecutionContext,
    postgres: PostgresResource,
    analysis: AnalysisProviderResource,
    image_attributes: Any,  # a DataFrame, or one per partition when a backfill run spans several
    image_embeddings: Any,
) -> MaterializeResult:
    vocab = get_vocabulary()
    image_attributes, image_embeddings = _one_frame(image_attributes), _one_frame(image_embeddings)
    # pandas turns missing values into NaN on the way through the IO manager; the models want None.
    rows = image_attributes.astype(object).where(image_attributes.notna(), None)
    ok = rows[rows["status"] == "analysed"] if len(rows) else rows
    bad = rows[rows["status"] == "failed"] if len(rows) else rows
    hashed = rows[rows["content_hash"].notna()] if len(rows) else rows  # an image never read has no hash yet
    vectors = image_embeddings.set_index("image_id") if len(image_embeddings) else image_embeddings
    failures = [pg.Failure(image_id=int(r["image_id"]), content_hash=r["content_hash"], reason=r["error"],
                           retryable=bool(r["retryable"])) for r in bad.to_dict("records")]
    counts: dict[str, int] = {}
    provider = analysis.get()
    saved = 0
    with postgres.connect() as conn:
        # First the hashes of the bytes read: the analyses and failures below apply to images holding them.
        # (A frame written before frames carried the ETag has none: its hashes are the inventory's own.)
        pg.record_reads(conn, [pg.ReadBytes(image_id=int(r["image_id"]), etag=r.get("etag"),
                                            content_hash=r["content_hash"]) for r in hashed.to_dict("records")],
                        provider.model_version)
        records = ok.to_dict("records")
        for i in range(0, len(records), SAVE_CHUNK):  # validated objects for a chunk at a time, not the partition
            saved += pg.save_analyses(conn, [_analysis(rec, vectors.loc[rec["image_id"]])
                                             for rec in records[i:i + SAVE_CHUNK]], vocab.version)
        pg.mark_failed(conn, failures, provider.model_version)
        conn.commit()
        # The version's HNSW indexes (Postgres search) are built once its analyses cover the catalogue: one
        # build over the loaded rows, not every row of a backfill added to two graphs one at a time.
        if pg.images_missing_version(conn, provider.model_version) == 0:
            pg.ensure_vector_indexes(conn, provider.model_version, provider.image_dim, provider.text_dim)
        for key in context.partition_keys:
            for status, n in pg.status_counts(conn, key).items():
                counts[status] = counts.get(status, 0) + n
    for f in failures[:20]:
        context.log.warning(f"image {f.image_id} failed{' (will retry)' if f.retryable else ''}: {f.reason}")
    return MaterializeResult(metadata={
        "written": saved,
        "failed": len(failures),
        "vocab_version": vocab.version,
        **{f"status_{k}": v for k, v in sorted(counts.items())},
    })


def _analysis(rec: dict, vec: pd.Series) -> tuple[int, str, ImageAnalysis]:
    """(image_id, content_hash, analysis) of one attribute row and its vectors (arrays, or lists from older runs)."""
    return int(rec["image_id"]), rec["content_hash"], ImageAnalysis(
        category=rec["category"], category_confidence=rec["category_confidence"],
        colors=[{"color": c, "coverage": s} for c, s in zip(rec["colors"], rec["color_coverage"], strict=True)],
        pattern=rec["pattern"], has_print=rec["has_print"], attributes=rec["attributes"],
        description=rec["description"], model_version=rec["model_version"],
        image_embedding=np.asarray(vec["image_embedding"], dtype=np.float64).tolist(),
        text_embedding=np.asarray(vec["text_embedding"], dtype=np.float64).tolist(),
    )


def _one_frame(value: pd.DataFrame | dict[str, pd.DataFrame]) -> pd.DataFrame:
    """A run over several partitions loads one frame per partition: they are analysed as one."""
    if isinstance(value, dict):
        frames = [f for f in value.values() if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else next(iter(value.values()))
    return value
