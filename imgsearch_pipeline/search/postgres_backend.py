"""Retrieval on PostgreSQL (pgvector + full-text search), with exactly the OpenSearch backend's semantics.

For catalogues that run no OpenSearch. The same lists as `opensearch_backend`: a lexical list (hybrid: every
filtered item, ranked by text relevance; keyword: only items sharing a word with the query, no filters) and a
k-NN list (text vector for hybrid / vector, image vector for image), fused by RRF, one hit per product; the
product count and the facets are counted on the filtered set.

What counts as searchable is what the index would hold: the analysis of this model version that describes the
image's current bytes, of an image whose status is 'analysed' (see `storage.postgres._DOC_SQL`).

Every value travels as a query parameter. The only literals in the SQL are the model version (through
`sql.Literal`, so the planner can match the partial HNSW index of that version) and the vector dimension
(a type modifier, `vector(384)`, which cannot be a parameter).

k-NN uses the version's HNSW index (`storage.postgres.ensure_vector_indexes`) with iterative scans, so a
filter applied during the scan does not leave the list short; if it is short all the same (the scan hit
`hnsw.max_scan_tuples`, or there is no index) while more filtered items exist, the list is recomputed exactly
over the filtered rows, like Lucene's exact search for restrictive filters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager

import psycopg
from pgvector import Vector
from psycopg import sql
from psycopg.types.json import Jsonb

from imgsearch_pipeline.search.backend import FACET_FIELDS, IndexedImage, SearchRequest
from imgsearch_pipeline.search.fusion import best_per_group, rrf
from imgsearch_pipeline.search.plan import Clause, QueryPlan
from imgsearch_pipeline.search.results import FacetCount, Hit, SearchResponse
from imgsearch_pipeline.storage.postgres import VECTOR_COLUMNS, vector_expr, vector_type

FACET_SIZE = 30
_COLUMNS = {"category": "a.category", "pattern": "a.pattern", "department": "p.department"}
_DOC = sql.SQL(
    "a.image_id, i.product_id, i.s3_key, a.category, a.colors, a.pattern, a.has_print, a.attributes, "
    "a.description, p.name AS product_name, p.brand, p.department"
)
_FROM = sql.SQL(
    "FROM image_analysis a JOIN product_images i ON i.image_id = a.image_id AND i.content_hash = a.content_hash "
    "JOIN products p ON p.product_id = i.product_id"
)
# The same expressions as the migration's indexes (0003_search.sql), so the planner can use them.
_TSV = {
    "description": sql.SQL("a.description_tsv"),
    "name": sql.SQL("to_tsvector('english'::regconfig, coalesce(p.name, ''))"),
    "brand": sql.SQL("to_tsvector('simple'::regconfig, coalesce(p.brand, ''))"),
}
# The OR of a text's lexemes under a text search configuration (OpenSearch's match: operator OR). Lexemes are
# quoted (quotes and backslashes doubled), so nothing in the user's text is read as tsquery syntax.
_OR_QUERY = r"""(SELECT string_agg('''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || '''', ' | ')
    FROM unnest(to_tsvector({}::regconfig, %(text)s)))"""
_IMAGE_ID = re.compile(r"[0-9]{1,18}")


class PostgresBackend:
    name = "postgres"
    # Iterative HNSW scans: each scan step looks at ef_search candidates; the scan stops after MAX_SCAN_TUPLES.
    MIN_EF_SEARCH = 40
    MAX_EF_SEARCH = 1000  # pgvector's limit
    MAX_SCAN_TUPLES = 50_000

    def __init__(self, connect: Callable[[], AbstractContextManager[psycopg.Connection]], model_version: str) -> None:
        self.connect, self.model_version = connect, model_version

    # Filters -----------------------------------------------------------------------------------------------

    def where(self, plan: QueryPlan | None, exclude_products: list[str] = ()) -> tuple[sql.Composable, dict]:
        """The live rows of this model version under the plan's constraints (opensearch_backend.filter_query):
        a filter clause holds when the item has any of its values, an exclusion drops items having any of
        them, a missing value never matches a filter and never triggers an exclusion."""
        params: dict = {}

        def param(value) -> sql.Placeholder:
            name = f"w{len(params)}"
            params[name] = value
            return sql.Placeholder(name)

        conds: list[sql.Composable] = [
            sql.SQL("a.model_version = {}").format(sql.Literal(self.model_version)),
            sql.SQL("i.status = 'analysed'"),
        ]
        if plan is not None:
            conds += [_holds(c, param) for c in plan.filters]
            if plan.has_print is not None:
                conds.append(sql.SQL("a.has_print = {}").format(param(plan.has_print)))
            conds += [sql.SQL("NOT coalesce({}, false)").format(_holds(c, param)) for c in plan.exclude]
        if exclude_products:
            conds.append(sql.SQL("i.product_id <> ALL({}::text[])").format(param(list(exclude_products))))
        return sql.SQL(" AND ").join(conds), params

    # Ranked lists ------------------------------------------------------------------------------------------

    def knn_sql(self, field: str, dim: int, where: sql.Composable, exact: bool = False) -> sql.Composable:
        """The k-NN list under `where` (params: `vec`, `k`): the HNSW index's own expression, so the planner can
        use it; relaxed order from the iterative scan, so re-sorted outside. `exact` orders by a different
        expression, which no index serves: an exact scan of the filtered rows."""
        column = VECTOR_COLUMNS[field]
        kind = vector_type(dim)
        if exact or kind is None:
            distance = sql.SQL("{} <=> %(vec)s::vector").format(sql.Identifier("a", column))
        else:
            distance = sql.SQL("{} <=> %(vec)s::{}({})").format(
                vector_expr(column, dim, "a"), sql.SQL(kind[0]), sql.Literal(int(dim)))
        return sql.SQL(
            "WITH knn AS MATERIALIZED (SELECT {doc}, {distance} AS distance {frm} WHERE {where} AND {col} IS NOT NULL"
            " ORDER BY distance LIMIT %(k)s) SELECT * FROM knn ORDER BY distance, image_id"
        ).format(doc=_DOC, distance=distance, frm=_FROM, where=where, col=sql.Identifier("a", column))

    def _knn(self, conn: psycopg.Connection, field: str, vector: list[float], where: sql.Composable,
             params: dict, k: int, available: int) -> list[dict]:
        args = params | {"vec": Vector([float(x) for x in vector]).to_text(), "k": k}
        rows = conn.execute(self.knn_sql(field, len(vector), where), args).fetchall()
        if len(rows) < min(k, available):  # the index scan gave up before finding every filtered item
            rows = conn.execute(self.knn_sql(field, len(vector), where, exact=True), args).fetchall()
        return rows

    def _lexical(self, conn: psycopg.Connection, text: str, where: sql.Composable, params: dict, k: int,
                 must_match: bool) -> list[dict]:
        """Items ranked by text relevance, best first; `must_match`: only items sharing a word with `text`.

        Like OpenSearch's multi_match (best_fields) over description^2, product_name and brand.text: the best
        field's score counts, the description's twice; the query is analysed per field (english / simple)."""
        queries = conn.execute(
            sql.SQL("SELECT {} AS english, {} AS simple").format(
                sql.SQL(_OR_QUERY).format(sql.Literal("english")), sql.SQL(_OR_QUERY).format(sql.Literal("simple"))),
            {"text": text},
        ).fetchone()
        if must_match and queries["english"] is None and queries["simple"] is None:
            return []
        tsq = {"description": sql.SQL("%(english)s::tsquery"), "name": sql.SQL("%(english)s::tsquery"),
               "brand": sql.SQL("%(simple)s::tsquery")}
        score = sql.SQL("coalesce(greatest(2 * ts_rank({}, {}, 1), ts_rank({}, {}, 1), ts_rank({}, {}, 1)), 0)").format(
            *(part for f in ("description", "name", "brand") for part in (_TSV[f], tsq[f])))
        match = sql.SQL(" OR ").join(sql.SQL("{} @@ {}").format(_TSV[f], tsq[f]) for f in _TSV)
        cond = sql.SQL(" AND ({})").format(match) if must_match else sql.SQL("")
        query = sql.SQL("SELECT {doc}, {score} AS score {frm} WHERE {where}{cond} "
                        "ORDER BY score DESC, a.image_id LIMIT %(k)s").format(
            doc=_DOC, score=score, frm=_FROM, where=where, cond=cond)
        return conn.execute(query, params | dict(queries) | {"k": k}).fetchall()

    # Counts ------------------------------------------------------------------------------------------------

    def _counts(self, conn: psycopg.Connection, where: sql.Composable, params: dict, facets: bool) -> list[dict]:
        """One row `field = 'total'` (images, products, images with each vector) and, with facets, one per value
        of category / color / pattern (images and products having it)."""
        parts = [sql.SQL(
            "SELECT 'total' AS field, NULL::text AS value, count(*) AS docs, count(DISTINCT product_id) AS products,"
            " count(*) FILTER (WHERE has_image) AS image_vectors, count(*) FILTER (WHERE has_text) AS text_vectors"
            " FROM f")]
        if facets:
            for field, expr, source in (("category", "category", "f"), ("pattern", "pattern", "f"),
                                        ("color", "c.value", "f CROSS JOIN LATERAL unnest(f.colors) AS c(value)")):
                parts.append(sql.SQL(
                    "SELECT {field} AS field, {expr} AS value, count(DISTINCT image_id) AS docs,"
                    " count(DISTINCT product_id) AS products, 0, 0 FROM {source} WHERE {expr} IS NOT NULL"
                    " GROUP BY {expr}").format(field=sql.Literal(field), expr=sql.SQL(expr), source=sql.SQL(source)))
        query = sql.SQL(
            "WITH f AS MATERIALIZED (SELECT a.image_id, i.product_id, a.category, a.pattern, a.colors,"
            " a.image_embedding IS NOT NULL AS has_image, a.text_embedding IS NOT NULL AS has_text {frm}"
            " WHERE {where}) {parts}").format(frm=_FROM, where=where, parts=sql.SQL(" UNION ALL ").join(parts))
        return conn.execute(query, params).fetchall()

    # The contract ------------------------------------------------------------------------------------------

    def search(self, req: SearchRequest) -> SearchResponse:
        where, params = self.where(req.plan if req.filtered else None, req.exclude_products)
        field, vector = {"hybrid": ("text", req.text_vector), "vector": ("text", req.text_vector),
                         "image": ("image", req.image_vector)}.get(req.mode, ("text", None))
        ef_search = max(self.MIN_EF_SEARCH, min(self.MAX_EF_SEARCH, req.candidates))
        with self.connect() as conn, conn.transaction():
            conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                         "set_config('hnsw.ef_search', %s, true), set_config('hnsw.max_scan_tuples', %s, true)",
                         (str(ef_search), str(self.MAX_SCAN_TUPLES)))
            counts = self._counts(conn, where, params, req.facets)
            total = next(r for r in counts if r["field"] == "total")
            lists: list[list[dict]] = []
            if req.mode in ("hybrid", "keyword") and (req.text or req.mode == "hybrid"):
                lists.append(self._lexical(conn, req.text, where, params, req.candidates,
                                           must_match=req.mode == "keyword"))
            if vector is not None:
                lists.append(self._knn(conn, field, vector, where, params, req.candidates,
                                       total[f"{field}_vectors"]))
        docs = {str(r["image_id"]): r for ranked in lists for r in ranked}
        ranked_ids = [[str(r["image_id"]) for r in ranked] for ranked in lists]
        fused = best_per_group(rrf(ranked_ids), {i: d["product_id"] for i, d in docs.items()}, req.size)
        hits = [Hit.from_document(docs[i], score, req.plan) for i, score in fused]
        facets = {}
        if req.facets:
            for name in FACET_FIELDS:
                # OpenSearch's terms aggregation: most documents (images) first, ties by value (byte order).
                rows = sorted((r for r in counts if r["field"] == name),
                              key=lambda r: (-r["docs"], r["value"].encode("utf-8")))
                facets[name] = [FacetCount(value=r["value"], products=r["products"]) for r in rows[:FACET_SIZE]]
        return SearchResponse(plan=req.plan, hits=hits, total_products=total["products"], facets=facets,
                              mode=req.mode, backend=self.name)

    def fields_with_values(self, fields: list[str]) -> set[str]:
        where, params = self.where(None)
        checks = [sql.SQL("bool_or(p.department IS NOT NULL)") if f == "department"
                  else sql.SQL("bool_or(a.attributes ? {})").format(sql.Literal(f)) for f in fields]
        if not checks:
            return set()
        with self.connect() as conn:
            row = conn.execute(sql.SQL("SELECT {} {frm} WHERE {where}").format(
                sql.SQL(", ").join(c + sql.SQL(f" AS c{i}") for i, c in enumerate(checks)), frm=_FROM, where=where),
                params).fetchone()
        return {f for i, f in enumerate(fields) if row[f"c{i}"]}

    def indexed_image(self, image_id: str) -> IndexedImage | None:
        if not _IMAGE_ID.fullmatch(image_id) or str(int(image_id)) != image_id:
            return None  # not an id the index could hold (OpenSearch: not found)
        where, params = self.where(None)
        with self.connect() as conn:
            row = conn.execute(
                sql.SQL("SELECT i.product_id, a.image_embedding {frm} WHERE {where} AND a.image_id = %(id)s").format(
                    frm=_FROM, where=where),
                params | {"id": int(image_id)},
            ).fetchone()
        if row is None or row["image_embedding"] is None:
            return None
        vec = row["image_embedding"]
        vec = Vector.from_text(vec) if isinstance(vec, str) else vec
        values = vec.to_list() if isinstance(vec, Vector) else list(vec)
        return IndexedImage(image_id=image_id, product_id=row["product_id"], image_vector=[float(x) for x in values])


def _holds(clause: Clause, param: Callable[[object], sql.Placeholder]) -> sql.Composable:
    """True when the item has any of the clause's values; NULL or false otherwise (a missing value)."""
    values = list(clause.values)
    if not values:
        return sql.SQL("false")  # OpenSearch: `terms` with no values matches nothing
    if clause.field == "color":
        return sql.SQL("a.colors && {}::text[]").format(param(values))
    if clause.field in _COLUMNS:
        return sql.SQL("{} = ANY({}::text[])").format(sql.SQL(_COLUMNS[clause.field]), param(values))
    # Open attributes: containment, which the GIN index serves (and which, like a keyword field, also matches a
    # value inside an array).
    return sql.SQL("({})").format(sql.SQL(" OR ").join(
        sql.SQL("a.attributes @> {}").format(param(Jsonb({clause.field: v}))) for v in values))
