"""The partition's analyses, bulk-indexed into the OpenSearch index of the current model version.

Only documents that differ from what the index holds are sent: a re-run with nothing new sends nothing, while
product data edited in the feed or through the API, a re-analysis, or an index that lost documents (an outage,
a new model version's empty index) are all caught, whatever wrote the index last.
"""


import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import quote, urlsplit

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset
from opensearchpy import OpenSearch
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


COMPARE_CHUNK = 500  # documents looked up in the index per request


def _without_vectors(row: dict) -> dict:
    """The document of an index row, vectors aside: they change only with the analysis, and so does its
    `analysed_at`, which the document holds."""
    return osx.to_document({**row, **{col: None for _, col in osx.VECTOR_FIELDS}})


def changed_rows(client: OpenSearch, index: str, rows: Iterable[dict], chunk: int = COMPARE_CHUNK) -> Iterator[dict]:
    """The rows whose document is missing from `index` or differs from the one it holds."""
    def differing(batch: list[dict]) -> Iterator[dict]:
        held = client.mget(index=index, body={"ids": [str(r["image_id"]) for r in batch]},
                           _source_excludes=[field for field, _ in osx.VECTOR_FIELDS])
        docs = {d["_id"]: d["_source"] for d in held["docs"] if d.get("found")}
        return (r for r in batch if docs.get(str(r["image_id"])) != _without_vectors(r))

    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) == chunk:
            yield from differing(batch)
            batch = []
    if batch:
        yield from differing(batch)


def held_ids(client: OpenSearch, index: str, image_ids: Sequence[int], chunk: int = COMPARE_CHUNK) -> list[int]:
    """The ids among `image_ids` that `index` holds a document for."""
    found: list[int] = []
    for i in range(0, len(image_ids), chunk):
        got = client.mget(index=index, body={"ids": [str(x) for x in image_ids[i:i + chunk]]}, _source=False)
        found += [int(d["_id"]) for d in got["docs"] if d.get("found")]
    return found


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
                rows = pg.iter_index_rows(conn, provider.model_version, key)
                indexed += osx.bulk_index(client, index, changed_rows(client, index, rows))
                removed += osx.delete_documents(client, index, held_ids(client, index,
                                                                        pg.image_ids_not_live(conn, key)))
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
