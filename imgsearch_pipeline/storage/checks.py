"""Data-quality checks over Postgres and OpenSearch, as plain functions (the Dagster asset checks wrap them).

Each function measures one property and returns a report: counts, a bounded sample of offenders and a
`passed` verdict. Severity and blocking are the caller's business (see `imgsearch_pipeline.assets.checks`).

The per-partition measures take `partitions`: the prefixes to look at (one, or a backfill run's range of
them), None for the whole catalogue.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg
from opensearchpy import OpenSearch
from pydantic import BaseModel, Field

from imgsearch_pipeline.storage import opensearch as osx
from imgsearch_pipeline.storage.postgres import _DOC_SQL  # the one definition of "a live analysed image"
from imgsearch_pipeline.vocab import Vocabulary

SAMPLE = 20
"""Offenders listed per report: enough to find the cause, small enough for the UI."""

NORM_TOLERANCE = 1e-3
"""|norm - 1| allowed for a unit vector: float32 normalisation is exact to ~1e-6; 1e-3 leaves room for
providers that round their output, while a vector that was never normalised is far outside it."""

INDEX_SAMPLE = 200
"""Ids compared field by field in each direction (Postgres -> index, index -> Postgres)."""


def _partition_filter(alias: str = "i") -> str:
    return f"(%(partitions)s::text[] IS NULL OR {alias}.partition_key = ANY(%(partitions)s::text[]))"


def _partitions(partitions: Sequence[str] | None) -> list[str] | None:
    return None if partitions is None else list(partitions)


# 1. Analysis coverage ------------------------------------------------------------------------------------


class CoverageReport(BaseModel):
    """Where each live image of a partition stands with the current model version."""

    model_version: str
    partitions: list[str] | None
    live: int = Field(description="images not deleted")
    analysed: int = Field(description="status analysed, with a row of this model version for the current bytes")
    failed: int = Field(description="status failed, with a failure record of this model version for these bytes")
    pending: int = Field(description="live, neither analysed nor failed for this model version and these bytes")
    deleted: int
    pending_sample: list[dict[str, Any]] = Field(default_factory=list)
    failed_sample: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def failed_share(self) -> float:
        return self.failed / self.live if self.live else 0.0


_COVERAGE_CTE = (
    "WITH c AS (SELECT i.image_id, i.s3_key, i.status, i.error, CASE "
    " WHEN i.status = 'deleted' THEN 'deleted' "
    " WHEN i.status = 'analysed' AND a.image_id IS NOT NULL THEN 'analysed' "
    " WHEN i.status = 'failed' AND f.image_id IS NOT NULL THEN 'failed' "
    " ELSE 'pending' END AS coverage "
    "FROM product_images i "
    "LEFT JOIN image_analysis a ON a.image_id = i.image_id AND a.model_version = %(mv)s "
    " AND a.content_hash = i.content_hash "
    "LEFT JOIN analysis_failures f ON f.image_id = i.image_id AND f.model_version = %(mv)s "
    " AND f.content_hash IS NOT DISTINCT FROM i.content_hash "  # bytes that could not be read have no hash
    f"WHERE {_partition_filter()}) "
)


def analysis_coverage(
    conn: psycopg.Connection, model_version: str, partitions: Sequence[str] | None = None, sample: int = SAMPLE
) -> CoverageReport:
    """Count the partitions' images as analysed / failed / pending for `model_version`.

    An image counts as analysed only when this model version analysed its current bytes: after a model
    upgrade, or new bytes under the same key, it is pending again until the next run, as the pipeline sees it.
    """
    params = {"mv": model_version, "partitions": _partitions(partitions), "n": sample}
    counts = {r["coverage"]: r["n"] for r in conn.execute(
        _COVERAGE_CTE + "SELECT coverage, count(*) AS n FROM c GROUP BY coverage", params)}

    def offenders(kind: str) -> list[dict[str, Any]]:
        return conn.execute(
            _COVERAGE_CTE + "SELECT image_id, s3_key, status, error FROM c WHERE coverage = %(kind)s "
            "ORDER BY image_id LIMIT %(n)s", params | {"kind": kind}).fetchall()

    deleted = counts.get("deleted", 0)
    return CoverageReport(
        model_version=model_version, partitions=_partitions(partitions),
        live=sum(counts.values()) - deleted, analysed=counts.get("analysed", 0), failed=counts.get("failed", 0),
        pending=counts.get("pending", 0), deleted=deleted,
        pending_sample=offenders("pending") if counts.get("pending") else [],
        failed_sample=offenders("failed") if counts.get("failed") else [],
    )


# 2. Vocabulary -------------------------------------------------------------------------------------------


class VocabularyViolation(BaseModel):
    image_id: int
    field: str = Field(description="category, colors, pattern or attributes.<name>")
    value: str | None


class VocabularyReport(BaseModel):
    model_version: str
    vocab_version: str
    partitions: list[str] | None
    rows: int = Field(description="analysis rows of the model version checked")
    violations: int = Field(description="stored values outside the vocabulary")
    offending_images: int
    sample: list[VocabularyViolation] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.violations == 0


_ROWS_CTE = (
    "WITH r AS (SELECT a.* FROM image_analysis a LEFT JOIN product_images i ON i.image_id = a.image_id "
    f"WHERE a.model_version = %(mv)s AND {_partition_filter()}) "
)

_VIOLATIONS_SQL = (
    "SELECT image_id, 'category' AS field, category AS value FROM r "
    " WHERE category IS NOT NULL AND category <> ALL(%(categories)s) "
    "UNION ALL SELECT image_id, 'colors', c FROM r, unnest(r.colors) AS c "
    " WHERE c IS NULL OR c <> ALL(%(colors)s) "
    "UNION ALL SELECT image_id, 'pattern', pattern FROM r "
    " WHERE pattern IS NOT NULL AND pattern <> ALL(%(patterns)s) "
    "UNION ALL SELECT image_id, 'attributes.' || e.key, e.value FROM r, jsonb_each_text(r.attributes) AS e "
    " WHERE NOT coalesce((%(attributes)s::jsonb -> e.key) ? e.value, false)"
)


def vocabulary_violations(
    conn: psycopg.Connection, model_version: str, vocab: Vocabulary, partitions: Sequence[str] | None = None,
    sample: int = SAMPLE,
) -> VocabularyReport:
    """Every category, colour, pattern and attribute value stored by `model_version` that is not a vocabulary id.

    Values are stored as ids (the analysis validators resolve synonyms), so membership is exact. Rows of
    deleted or re-uploaded images count too: they are stored values, and a vocabulary change that removed a
    word shows up here until the affected images are re-analysed.
    """
    params = {
        "mv": model_version, "partitions": _partitions(partitions), "n": sample,
        "categories": list(vocab.category_ids), "colors": list(vocab.color_ids),
        "patterns": list(vocab.pattern_ids),
        "attributes": json.dumps({name: [v.id for v in attr.values] for name, attr in vocab.attributes.items()}),
    }
    rows = conn.execute(_ROWS_CTE + "SELECT count(*) AS n FROM r", params).fetchone()["n"]
    totals = conn.execute(
        _ROWS_CTE + f"SELECT count(*) AS n, count(DISTINCT image_id) AS images FROM ({_VIOLATIONS_SQL}) v",
        params).fetchone()
    found = conn.execute(
        _ROWS_CTE + f"SELECT * FROM ({_VIOLATIONS_SQL}) v ORDER BY image_id, field LIMIT %(n)s", params).fetchall()
    return VocabularyReport(
        model_version=model_version, vocab_version=vocab.version, partitions=_partitions(partitions), rows=rows,
        violations=totals["n"], offending_images=totals["images"],
        sample=[VocabularyViolation(**r) for r in found],
    )


# 3. Embeddings -------------------------------------------------------------------------------------------


class EmbeddingProblem(BaseModel):
    image_id: int
    problems: list[str]


class EmbeddingReport(BaseModel):
    model_version: str
    partitions: list[str] | None
    image_dim: int
    text_dim: int
    tolerance: float
    rows: int
    bad_rows: int
    min_norm: float | None = Field(default=None, description="over both vectors of every row checked")
    max_norm: float | None = None
    sample: list[EmbeddingProblem] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.bad_rows == 0


def _vector_ok(col: str, dim: str) -> str:
    # NaN compares greater than every number in Postgres, so a NaN norm is never within the tolerance.
    return (f"({col}_dims IS NOT DISTINCT FROM %({dim})s AND (abs({col}_norm - 1) <= %(tol)s) IS TRUE)")


_EMBEDDINGS_CTE = (
    "WITH v AS (SELECT a.image_id, "
    " vector_dims(a.image_embedding) AS image_dims, vector_norm(a.image_embedding) AS image_norm, "
    " vector_dims(a.text_embedding) AS text_dims, vector_norm(a.text_embedding) AS text_norm "
    "FROM image_analysis a LEFT JOIN product_images i ON i.image_id = a.image_id "
    f"WHERE a.model_version = %(mv)s AND {_partition_filter()}), "
    f"bad AS (SELECT * FROM v WHERE NOT ({_vector_ok('image', 'idim')} AND {_vector_ok('text', 'tdim')})) "
)


def embedding_problems(
    conn: psycopg.Connection, model_version: str, image_dim: int, text_dim: int,
    partitions: Sequence[str] | None = None, tolerance: float = NORM_TOLERANCE, sample: int = SAMPLE,
) -> EmbeddingReport:
    """Rows of `model_version` whose image or text vector is missing, has the wrong dimension, or is not of
    unit norm within `tolerance` (a zero vector has norm 0; a NaN or infinite component a non-finite norm).

    The database already refuses some of this: pgvector rejects NaN and infinite components on input, and while
    a model version has its HNSW indexes (`storage.postgres.ensure_vector_indexes`, on `column::vector(dim)`) a
    vector of another dimension cannot be written for it. Versions without those indexes (over 4000
    dimensions, or rows written before the indexes existed) and zero or unnormalised vectors rely on this check.
    """
    params = {"mv": model_version, "partitions": _partitions(partitions), "n": sample, "idim": image_dim,
              "tdim": text_dim, "tol": tolerance}
    stats = conn.execute(
        _EMBEDDINGS_CTE + "SELECT (SELECT count(*) FROM v) AS n_rows, (SELECT count(*) FROM bad) AS bad, "
        "(SELECT least(min(image_norm), min(text_norm)) FROM v) AS min_norm, "
        "(SELECT greatest(max(image_norm), max(text_norm)) FROM v) AS max_norm", params).fetchone()
    found = conn.execute(_EMBEDDINGS_CTE + "SELECT * FROM bad ORDER BY image_id LIMIT %(n)s", params).fetchall()

    def problems(r: dict) -> list[str]:
        out = []
        for col, dim in (("image", image_dim), ("text", text_dim)):
            dims, norm = r[f"{col}_dims"], r[f"{col}_norm"]
            if dims is None:
                out.append(f"{col}_embedding missing")
                continue
            if dims != dim:
                out.append(f"{col}_embedding has {dims} dimensions, not {dim}")
            if not abs(norm - 1) <= tolerance:
                out.append(f"{col}_embedding norm {norm:.6g}")
        return out

    return EmbeddingReport(
        model_version=model_version, partitions=_partitions(partitions), image_dim=image_dim, text_dim=text_dim,
        tolerance=tolerance, rows=stats["n_rows"], bad_rows=stats["bad"], min_norm=stats["min_norm"],
        max_norm=stats["max_norm"],
        sample=[EmbeddingProblem(image_id=r["image_id"], problems=problems(r)) for r in found],
    )


# 4. Postgres vs OpenSearch -------------------------------------------------------------------------------


class FieldMismatch(BaseModel):
    image_id: int
    field: str
    postgres: Any
    index: Any


class IndexConsistencyReport(BaseModel):
    model_version: str
    index: str | None = Field(description="newest generation of the model version's index; None if none exists")
    alias: str
    alias_target: str | None
    postgres_count: int = Field(description="live analysed images of the model version")
    index_count: int
    partition_differences: dict[str, tuple[int, int]] = Field(
        default_factory=dict, description="partition -> (postgres, index) where they differ")
    sampled: int = Field(0, description="ids compared, both directions together")
    missing_from_index: list[int] = Field(default_factory=list, description="sampled live rows with no document")
    stray_in_index: list[str] = Field(default_factory=list, description="sampled documents with no live row")
    mismatches: list[FieldMismatch] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (self.postgres_count == self.index_count and not self.partition_differences
                and not self.missing_from_index and not self.stray_in_index and not self.mismatches)


def _index_partition_counts(client: OpenSearch, index: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    after = None
    while True:
        comp: dict[str, Any] = {"size": 1000, "sources": [{"p": {"terms": {"field": "partition"}}}]}
        if after:
            comp["after"] = after
        res = client.search(index=index, body={"size": 0, "aggs": {"parts": {"composite": comp}}})
        agg = res["aggregations"]["parts"]
        counts.update({b["key"]["p"]: b["doc_count"] for b in agg["buckets"]})
        after = agg.get("after_key")
        if not agg["buckets"] or not after:
            return counts


def index_consistency(
    conn: psycopg.Connection, client: OpenSearch, alias: str, index_base: str, model_version: str,
    sample: int = INDEX_SAMPLE,
) -> IndexConsistencyReport:
    """Compare the live rows of `model_version` with the documents of its index (the newest generation of
    `index_base`, where `search_index` writes).

    Counts are compared in total and per partition; then `sample` random live rows are looked up in the index
    and `sample` random documents in Postgres (a catalogue no larger than the sample is compared in full), and
    category and colours must be equal. A missing document plus a stray one leave the totals equal: the
    per-partition counts or the samples catch that.
    """
    pg_parts = {r["partition_key"]: r["n"] for r in conn.execute(
        f"SELECT partition_key, count(*) AS n FROM ({_DOC_SQL}) t GROUP BY partition_key", (model_version,))}
    gens = osx.generations(client, index_base)
    index = f"{index_base}-g{gens[-1]}" if gens else None
    report = IndexConsistencyReport(
        model_version=model_version, index=index, alias=alias, alias_target=osx.alias_target(client, alias),
        postgres_count=sum(pg_parts.values()), index_count=osx.count(client, index) if index else 0,
    )
    if index is None:
        report.partition_differences = {p: (n, 0) for p, n in sorted(pg_parts.items())}
        return report
    os_parts = _index_partition_counts(client, index)
    report.partition_differences = {
        p: (pg_parts.get(p, 0), os_parts.get(p, 0)) for p in sorted(pg_parts.keys() | os_parts.keys())
        if pg_parts.get(p, 0) != os_parts.get(p, 0)
    }

    # Postgres -> index: random live rows must have a document with the same values.
    rows = conn.execute(f"SELECT image_id, category, colors FROM ({_DOC_SQL}) t ORDER BY random() LIMIT %s",
                        (model_version, sample)).fetchall()
    docs = {}
    if rows:
        got = client.mget(index=index, body={"ids": [str(r["image_id"]) for r in rows]},
                          _source_includes=["category", "colors"])
        docs = {d["_id"]: d["_source"] for d in got["docs"] if d.get("found")}
    # Index -> Postgres: random documents must be live rows.
    hits = client.search(index=index, body={
        "size": sample, "_source": ["category", "colors"],
        "query": {"function_score": {"query": {"match_all": {}}, "random_score": {}}},
    })["hits"]["hits"]
    hit_ids = [int(h["_id"]) for h in hits if h["_id"].isdigit()]
    by_id = {r["image_id"]: r for r in rows}
    if hit_ids:
        by_id |= {r["image_id"]: r for r in conn.execute(
            f"SELECT image_id, category, colors FROM ({_DOC_SQL}) t WHERE image_id = ANY(%s)",
            (model_version, hit_ids))}
    docs |= {h["_id"]: h["_source"] for h in hits}

    report.sampled = len(rows) + len(hits)
    report.missing_from_index = sorted(r["image_id"] for r in rows if str(r["image_id"]) not in docs)
    report.stray_in_index = sorted({h["_id"] for h in hits if not h["_id"].isdigit() or int(h["_id"]) not in by_id})
    for image_id, row in sorted(by_id.items()):
        doc = docs.get(str(image_id))
        if doc is None:
            continue
        for field, pg_value, os_value in (("category", row["category"], doc.get("category")),
                                          ("colors", list(row["colors"] or []), list(doc.get("colors") or []))):
            if pg_value != os_value:
                report.mismatches.append(FieldMismatch(image_id=image_id, field=field, postgres=pg_value,
                                                       index=os_value))
    return report


# 5. Orphans ----------------------------------------------------------------------------------------------


class OrphanReport(BaseModel):
    images_without_product: int
    analyses_without_image: int
    failures_without_image: int
    image_sample: list[dict[str, Any]] = Field(default_factory=list)
    analysis_sample: list[int] = Field(default_factory=list, description="image ids of orphaned analysis rows")
    failure_sample: list[int] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not (self.images_without_product or self.analyses_without_image or self.failures_without_image)


def orphans(conn: psycopg.Connection, sample: int = SAMPLE) -> OrphanReport:
    """Rows whose parent is gone: images without their product, analyses and failures without their image.

    The foreign keys (ON DELETE CASCADE) make these impossible in ordinary operation; they appear when the
    constraints were bypassed: a restore or bulk load with triggers disabled (pg_restore --disable-triggers,
    session_replication_role = replica), or a constraint dropped and re-added NOT VALID.
    """
    images = "FROM product_images i WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.product_id = i.product_id)"
    analyses = ("FROM image_analysis a WHERE NOT EXISTS "
                "(SELECT 1 FROM product_images i WHERE i.image_id = a.image_id)")
    failures = ("FROM analysis_failures f WHERE NOT EXISTS "
                "(SELECT 1 FROM product_images i WHERE i.image_id = f.image_id)")
    n = conn.execute(f"SELECT (SELECT count(*) {images}) AS images, (SELECT count(*) {analyses}) AS analyses, "
                     f"(SELECT count(*) {failures}) AS failures").fetchone()
    return OrphanReport(
        images_without_product=n["images"], analyses_without_image=n["analyses"],
        failures_without_image=n["failures"],
        image_sample=conn.execute(f"SELECT i.image_id, i.s3_key, i.product_id {images} ORDER BY i.image_id "
                                  "LIMIT %s", (sample,)).fetchall() if n["images"] else [],
        analysis_sample=[r["image_id"] for r in conn.execute(
            f"SELECT DISTINCT a.image_id {analyses} ORDER BY a.image_id LIMIT %s", (sample,))] if n["analyses"] else [],
        failure_sample=[r["image_id"] for r in conn.execute(
            f"SELECT DISTINCT f.image_id {failures} ORDER BY f.image_id LIMIT %s", (sample,))] if n["failures"] else [],
    )
