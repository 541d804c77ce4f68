"""The partition's analyses, bulk-indexed into the OpenSearch index of the current model version."""


import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import quote, urlsplit

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError

from imgsearch_pipeline.assets.analysis import BACKFILL, REPROCESS
from imgsearch_pipeline.partitions import image_prefixes
from imgsearch_pipeline.resources import AnalysisProviderResource, OpenSearchResource, PostgresResource
from imgsearch_pipeline.storage import opensearch as osx
from imgsearch_pipeline.storage import postgres as pg


class SearchIndexUnavailable(RuntimeError):
    """OpenSearch went away while a partition was indexed: Postgres is complete, only the index is behind."""


@contextmanager
def _reachable(url: str, partitions: Sequence[str]) -> Iterator[None]:
    """A lost connection (refused, reset, timed out) fails the run saying what happened and what to do."""
    try:
        yield
    except OpenSearchConnectionError as e:
        where = urlsplit(url)._replace(netloc=urlsplit(url).netloc.rpartition("@")[2]).geturl()  # no user:password
        raise SearchIndexUnavailable(
            f"OpenSearch at {where} could not be reached while indexing {', '.join(partitions)}: {e.error}. "
            "Postgres holds the analyses; once OpenSearch is back, rerun the partition or `imgsearch rebuild-index`"
        ) from e


def search_url(partition_key: str) -> str:
    """The search page, asked for the partition's own words (catalog/women/dress/ -> "women dress")."""
    base = os.environ.get("IMGSEARCH_SEARCH_URL", "http://127.0.0.1:8000/")
    words = " ".join(w for w in re.split(r"[/_-]+", partition_key) if w and w != "catalog")
    return f"{base.rstrip('/')}/?q={quote(words)}"


@asset(
    deps=[AssetKey("image_analysis")],
    partitions_def=image_prefixes,
    kinds={"opensearch"},
    group_name="search",
    automation_condition=REPROCESS,
    backfill_policy=BACKFILL,
    description="OpenSearch documents for the partition's analysed images (index per model version, behind an alias).",
)
def search_index(
    context: AssetExecutionContext,
    postgres: PostgresResource,
    opensearch: OpenSearchResource,
    analysis: AnalysisProviderResource,
) -> MaterializeResult:
    provider = analysis.get()
    with _reachable(opensearch.url, context.partition_keys):
        client = opensearch.client()
        index = osx.write_index(client, opensearch.alias, opensearch.index_base(provider.model_version),
                                provider.image_dim, provider.text_dim)
        indexed = removed = 0
        with postgres.connect() as conn:
            for key in context.partition_keys:  # one prefix, or a backfill's range of them
                indexed += osx.bulk_index(client, index, pg.iter_index_rows(conn, provider.model_version, key))
                removed += osx.delete_documents(client, index, pg.image_ids_not_live(conn, key))
            missing = pg.images_missing_version(conn, provider.model_version)
        serving = osx.alias_target(client, opensearch.alias)
        if serving != index and missing == 0:
            # A new model version's index takes over only once it covers the whole catalogue: search never sees
            # half a catalogue, old and new versions never mix.
            osx.switch_alias(client, opensearch.alias, index)
            context.log.info(f"model version complete: alias {opensearch.alias} switched from {serving} to {index}")
            serving = index
        total = osx.count(client, index)
    return MaterializeResult(metadata={
        "indexed": indexed,
        "removed": removed,
        "index": index,
        "alias": opensearch.alias,
        "alias_serves": serving,
        "images_missing_this_version": missing,
        "index_documents": total,
        "search_page": MetadataValue.url(search_url(context.partition_keys[0])),
    })
