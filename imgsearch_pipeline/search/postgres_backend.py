"""Retrieval on PostgreSQL (pgvector + full-text search), with exactly the OpenSearch backend's semantics.

For catalogues that run no OpenSearch. The same lists as `opensearch_backend`: a lexical list (hybrid: every
filtered item, ranked by text relevance; keyword: only items sharing a word with the query, no filters) and a
k-NN list (text vector for hybrid / vector, image vector for image), fused by RRF, one hit per product; the
product count and the facets are counted on the filtered set.

What counts as searchable is what the index would hold: the analysis of this model version that describes the
image's current bytes, of an image whose status is 'analysed' (see `storage.postgres._DOC_SQL`).

Every value travels as a query parameter. The only literals in the SQL are the model version (through
`sql.Literal`, so the planner can match the partial HNSW index of that version), the vector dimension (a type
modifier, `vector(384)`, which cannot be a parameter) and fixed words of the schema: the status 'analysed' and
the text search configurations, which must be the indexed expressions' own.

Each part costs in proportion to what it returns, not to the size of the catalogue:
- An analysis joins its image on the content hash as `coalesce(i.content_hash = a.content_hash, false)`: the
  planner would take a plain `=` for independent of the id equality (both columns nearly unique) and expect 1
  row of the join where 100,000 come back, which made every plan above it scan and sort everything (the k-NN
  list never used its index). The coalesce gets a default selectivity of 1/2, within 2x of the truth.
- k-NN uses the version's HNSW index (`storage.postgres.ensure_vector_indexes`) with iterative scans: the
  index yields candidates in distance order and each is checked against the filter, its image and product, so
  a filter does not leave the list short; for a filter that keeps few items the planner scans those exactly.
  If the list is short all the same (the scan hit `hnsw.max_scan_tuples`, or there is no index) while more
  filtered items exist, it is recomputed exactly over the filtered rows, like Lucene's exact search for
  restrictive filters.
- The lexical list ranks only the filtered items that share a word with the query (`_MATCHING`); every other
  item scores 0, so when those are fewer than asked for the list goes on with the others by id, the order a
  ranking of every item gives.
- With `connect_apart`, the k-NN list runs on a connection of its own while the lexical list runs, as OpenSearch
  runs the searches of an `_msearch` side by side; each list then reads its own snapshot (so does `_msearch`).
- The product count and facets are counted per (value, product) with hash aggregates, and are remembered per
  filter while the database shows the same snapshot (as OpenSearch's request cache keeps a count request's
  answer until the index changes): an equal `pg_current_snapshot()` (same transactions running, none committed
  since) sees exactly the same rows, and a commit anywhere on the server moves it, so an answer is never stale.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import TypeVar

import psycopg
from pgvector import Vector
from psycopg import sql
from psycopg.types.json import Jsonb

from imgsearch_pipeline.search.backend import FACET_FIELDS, IndexedImage, SearchRequest
from imgsearch_pipeline.search.fusion import best_per_group, rrf
from imgsearch_pipeline.search.plan import Clause, QueryPlan
from imgsearch_pipeline.search.results import FacetCount, Hit, SearchResponse
from imgsearch_pipeline.storage.postgres import VECTOR_COLUMNS, vector_expr, vector_type

T = TypeVar("T")
Connect = Callable[[], AbstractContextManager[psycopg.Connection]]
FACET_SIZE = 30
_COLUMNS = {"category": "a.category", "pattern": "a.pattern"}
_DOC = sql.SQL(
    "a.image_id, i.product_id, i.s3_key, a.category, a.colors, a.pattern, a.has_print, a.attributes, "
    "a.description, p.name AS product_name, p.brand, p.department"
)
_FROM = sql.SQL(
    "FROM image_analysis a JOIN product_images i "
    "ON i.image_id = a.image_id AND coalesce(i.content_hash = a.content_hash, false)"
)
_SNAPSHOT = "pg_current_snapshot()::text"
# Stored and indexed (0006_product_text_stored.sql).
_NAME_TSV = sql.SQL("p.name_tsv")
_BRAND_TSV = sql.SQL("p.brand_tsv")
# The OR of a text's lexemes under a text search configuration (OpenSearch's match: operator OR). Lexemes are
# quoted (quotes and backslashes doubled), so nothing in the user's text is read as tsquery syntax.
_OR_QUERY = r"""(SELECT string_agg('''' || replace(replace(lexeme, '\', '\\'), '''', '''''') || '''', ' | ')
    FROM unnest(to_tsvector({}::regconfig, %(text)s)))"""
# Like OpenSearch's multi_match (best_fields) over description^2, product_name and brand.text: the best field's
# score counts, the description's twice. A field without a query word scores 0, so only the filtered items sharing
# a word with the query are ranked (`m`): those whose description has one, then the others whose product's name or
# brand has one; each set is found through its GIN index, or by checking the filtered rows when they are few.
# Name and brand are ranked once per product (`w`).
_MATCHING = """WITH m AS MATERIALIZED (
    SELECT a.image_id, i.product_id, 2 * ts_rank(a.description_tsv, %(english)s::tsquery, 1) AS description {frm}
    WHERE {where} AND a.description_tsv @@ %(english)s::tsquery
    UNION ALL SELECT a.image_id, i.product_id, 0 {frm}
    WHERE {where} AND NOT coalesce(a.description_tsv @@ %(english)s::tsquery, false) AND i.product_id IN (
        SELECT p.product_id FROM products p WHERE {name} @@ %(english)s::tsquery OR {brand} @@ %(simple)s::tsquery)),
w AS MATERIALIZED (SELECT p.product_id,
        greatest(ts_rank({name}, %(english)s::tsquery, 1), ts_rank({brand}, %(simple)s::tsquery, 1)) AS rank
    FROM products p WHERE p.product_id IN (SELECT product_id FROM m))
SELECT m.image_id, coalesce(greatest(m.description, w.rank), 0) AS rank FROM m JOIN w ON w.product_id = m.product_id
ORDER BY rank DESC, m.image_id LIMIT %(k)s"""
_IMAGE_ID = re.compile(r"[0-9]{1,18}")


class PostgresBackend:
    name = "postgres"
    # Iterative HNSW scans: each scan step looks at ef_search candidates; the scan stops after MAX_SCAN_TUPLES.
    # Twice the candidates asked for: at 100k, recall@10 of an unfiltered list of 100 went from 0.36 to 0.56 and
    # of negations from 0.92 to 0.98, for no measurable latency (docs/performance.md section 4).
    EF_SEARCH_PER_CANDIDATE = 2
    MIN_EF_SEARCH = 40
    MAX_EF_SEARCH = 1000  # pgvector's limit
    MAX_SCAN_TUPLES = 50_000
    CACHE_SIZE = 256  # filters whose counts are remembered (each a few KB)

    def __init__(self, connect: Connect, model_version: str, connect_apart: Connect | None = None,
                 lists_apart: int = 4) -> None:
        """`connect_apart`: connections for k-NN lists run beside a lexical list. They must not come from the
        pool `connect` draws on: a search holds its `connect` connection while it waits for one of these, and
        searches waiting on each other's connections would wait forever. `lists_apart`: at most that many at
        once (the size of that pool)."""
        self.connect, self.model_version = connect, model_version
        self._apart = ThreadPoolExecutor(lists_apart, "knn-list") if connect_apart else None
        self.connect_apart = connect_apart
        self._cache: OrderedDict[str, tuple[str, object]] = OrderedDict()
        self._lock = threading.Lock()

    def ef_search(self, candidates: int) -> int:
        return max(self.MIN_EF_SEARCH, min(self.MAX_EF_SEARCH, self.EF_SEARCH_PER_CANDIDATE * candidates))

    # Filters -----------------------------------------------------------------------------------------------

    def where(self, plan: QueryPlan | None, exclude_products: list[str] = ()) -> tuple[sql.Composable, dict]:
        """The live rows of this model version under the plan's constraints (opensearch_backend.filter_query):
        a filter clause holds when the item has any of its values, an exclusion drops items having any of
        them, a missing value never matches a filter and never triggers an exclusion. Reads `a` and `i` (see
        `_FROM`); a department is looked up in products."""
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

    def _documents(self, ranked: sql.Composable, order: str) -> sql.Composable:
        """The rows of `ranked` (image_id, rank; at most k) with their documents, joined after the ranking so
        that only the rows returned read product data."""
        return sql.SQL(
            "WITH r AS MATERIALIZED ({ranked}) SELECT {doc}, r.rank FROM r "
            "JOIN image_analysis a ON a.image_id = r.image_id AND a.model_version = {version} "
            "JOIN product_images i ON i.image_id = r.image_id JOIN products p ON p.product_id = i.product_id "
            "ORDER BY {order}").format(ranked=ranked, doc=_DOC, version=sql.Literal(self.model_version),
                                       order=sql.SQL(order))

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
        ranked = sql.SQL("SELECT a.image_id, {distance} AS rank {frm} WHERE {where} AND {col} IS NOT NULL "
                         "ORDER BY rank LIMIT %(k)s").format(distance=distance, frm=_FROM, where=where,
                                                             col=sql.Identifier("a", column))
        return self._documents(ranked, "r.rank, r.image_id")

    def _knn(self, conn: psycopg.Connection, field: str, vector: list[float], where: sql.Composable,
             params: dict, k: int, available: int) -> list[dict]:
        args = params | {"vec": Vector([float(x) for x in vector]).to_text(), "k": k}
        rows = conn.execute(self.knn_sql(field, len(vector), where), args).fetchall()
        if len(rows) < min(k, available):  # the index scan gave up before finding every filtered item
            rows = conn.execute(self.knn_sql(field, len(vector), where, exact=True), args).fetchall()
        return rows

    def _lexical(self, conn: psycopg.Connection, text: str, where: sql.Composable, params: dict, k: int,
                 must_match: bool) -> list[dict]:
        """Items ranked by text relevance, best first, ties by id; `must_match`: only items sharing a word with
        `text`. The query is analysed per field (english / simple), as OpenSearch does."""
        queries = conn.execute(
            sql.SQL("SELECT {} AS english, {} AS simple").format(
                sql.SQL(_OR_QUERY).format(sql.Literal("english")), sql.SQL(_OR_QUERY).format(sql.Literal("simple"))),
            {"text": text},
        ).fetchone()
        matched: list[dict] = []
        if queries["english"] is not None or queries["simple"] is not None:
            ranked = sql.SQL(_MATCHING).format(name=_NAME_TSV, brand=_BRAND_TSV, frm=_FROM, where=where)
            matched = conn.execute(self._documents(ranked, "r.rank DESC, r.image_id"),
                                   params | dict(queries) | {"k": k}).fetchall()
        if must_match or len(matched) == k:
            return matched
        # Every other filtered item scores 0: the list goes on with them by id. A matching item may score 0 too,
        # hence a full k of them, merged by (score, id).
        rest = sql.SQL("SELECT a.image_id, 0::float8 AS rank {frm} WHERE {where} "
                       "AND a.image_id <> ALL(%(matched)s::bigint[]) ORDER BY a.image_id LIMIT %(k)s").format(
            frm=_FROM, where=where)
        others = conn.execute(self._documents(rest, "r.image_id"),
                              params | {"matched": [r["image_id"] for r in matched], "k": k}).fetchall()
        return sorted(matched + others, key=lambda r: (-r["rank"], r["image_id"]))[:k]

    # Counts ------------------------------------------------------------------------------------------------

    def _counts(self, conn: psycopg.Connection, where: sql.Composable, params: dict, facets: bool) -> list[dict]:
        """One row `field = 'total'` (images, products, images with each vector) and, with facets, one per value
        of category / color / pattern (images and products having it); each row also carries the statement's
        snapshot.

        Counted per (value, product) first, so every count is a hash aggregate over the filtered rows read once,
        not a count(DISTINCT) sort per facet."""
        parts = [sql.SQL(
            "SELECT 'total' AS field, NULL AS value, sum(n) AS docs, count(*) AS products, sum(images) AS"
            " image_vectors, sum(texts) AS text_vectors FROM (SELECT product_id, count(*) AS n, count(*) FILTER"
            " (WHERE has_image) AS images, count(*) FILTER (WHERE has_text) AS texts FROM f GROUP BY product_id) g")]
        if facets:
            for field, value, images, source in (
                    ("category", "category", "count(*)", "f"),
                    ("pattern", "pattern", "count(*)", "f"),
                    # An image counts for its first mention of a colour.
                    ("color", "c.value", "count(*) FILTER (WHERE array_position(f.colors, c.value) = c.n)",
                     "f CROSS JOIN LATERAL unnest(f.colors) WITH ORDINALITY AS c(value, n)")):
                parts.append(sql.SQL(
                    "SELECT {field}, value, sum(n), count(*), 0, 0 FROM (SELECT {value} AS value, product_id, "
                    "{images} AS n FROM {source} WHERE {value} IS NOT NULL GROUP BY 1, 2) g GROUP BY value").format(
                    field=sql.Literal(field), value=sql.SQL(value), images=sql.SQL(images), source=sql.SQL(source)))
        query = sql.SQL(
            "WITH f AS MATERIALIZED (SELECT i.product_id, a.category, a.pattern, a.colors, a.image_embedding IS NOT"
            " NULL AS has_image, a.text_embedding IS NOT NULL AS has_text {frm} WHERE {where}) "
            "SELECT c.*, {snapshot} AS snapshot FROM ({parts}) c").format(
            frm=_FROM, where=where, snapshot=sql.SQL(_SNAPSHOT), parts=sql.SQL(" UNION ALL ").join(parts))
        sums = ("docs", "image_vectors", "text_vectors")  # sum() of counts is numeric, NULL over no rows
        return [r | {k: int(r[k] or 0) for k in sums} for r in conn.execute(query, params)]

    def _cached(self, key: str, snapshot: str, compute: Callable[[], tuple[str, T]]) -> T:
        """The answer for `key` computed under this same snapshot, else `compute()`'s (snapshot, answer)."""
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == snapshot:
                self._cache.move_to_end(key)
                return hit[1]
        computed, value = compute()
        with self._lock:
            self._cache[key] = (computed, value)
            self._cache.move_to_end(key)
            while len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return value

    # The contract ------------------------------------------------------------------------------------------

    def _settings(self, conn: psycopg.Connection, ef_search: int) -> str:
        """This transaction's HNSW scan settings; returns its snapshot."""
        return conn.execute(
            f"SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), set_config('hnsw.ef_search', %s,"
            f" true), set_config('hnsw.max_scan_tuples', %s, true), {_SNAPSHOT} AS snapshot",
            (str(ef_search), str(self.MAX_SCAN_TUPLES))).fetchone()["snapshot"]

    def _knn_apart(self, ef_search: int, *args) -> list[dict]:
        with self.connect_apart() as conn, conn.transaction():
            self._settings(conn, ef_search)
            return self._knn(conn, *args)

    def search(self, req: SearchRequest) -> SearchResponse:
        plan = req.plan if req.filtered else None
        where, params = self.where(plan, req.exclude_products)
        field, vector = {"hybrid": ("text", req.text_vector), "vector": ("text", req.text_vector),
                         "image": ("image", req.image_vector)}.get(req.mode, ("text", None))
        ef_search = self.ef_search(req.candidates)
        key = json.dumps(["counts", req.facets, plan and plan.model_dump(include={"filters", "exclude", "has_print"}),
                          req.exclude_products], sort_keys=True)
        lexical = req.mode in ("hybrid", "keyword") and bool(req.text or req.mode == "hybrid")
        with self.connect() as conn, conn.transaction():
            snapshot = self._settings(conn, ef_search)

            def count() -> tuple[str, list[dict]]:
                rows = self._counts(conn, where, params, req.facets)
                return rows[0]["snapshot"], rows

            counts = self._cached(key, snapshot, count)
            total = next(r for r in counts if r["field"] == "total")
            knn = (field, vector, where, params, req.candidates, total[f"{field}_vectors"])
            apart = self._apart.submit(self._knn_apart, ef_search, *knn) if (
                vector is not None and lexical and self._apart is not None) else None
            lists: list[list[dict]] = []
            if lexical:
                lists.append(self._lexical(conn, req.text, where, params, req.candidates,
                                           must_match=req.mode == "keyword"))
            if vector is not None:
                lists.append(apart.result() if apart is not None else self._knn(conn, *knn))
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
        """Asked before most searches that name an optional field: each is an EXISTS that stops at the first
        item having the field, remembered under the same snapshot like the counts."""
        if not fields:
            return set()
        where, params = self.where(None)
        checks = []
        for n, f in enumerate(fields):
            params[f"f{n}"] = f
            has = sql.SQL("a.attributes ? {}").format(sql.Placeholder(f"f{n}")) if f != "department" else sql.SQL(
                "EXISTS (SELECT FROM products p WHERE p.product_id = i.product_id AND p.department IS NOT NULL)")
            checks.append(sql.SQL("EXISTS (SELECT {frm} WHERE {where} AND {has}) AS {name}").format(
                frm=_FROM, where=where, has=has, name=sql.Identifier(f"c{n}")))
        query = sql.SQL("SELECT {}, {} AS snapshot").format(sql.SQL(", ").join(checks), sql.SQL(_SNAPSHOT))
        with self.connect() as conn:
            snapshot = conn.execute(f"SELECT {_SNAPSHOT} AS snapshot").fetchone()["snapshot"]

            def check() -> tuple[str, frozenset[str]]:
                row = conn.execute(query, params).fetchone()
                return row["snapshot"], frozenset(f for n, f in enumerate(fields) if row[f"c{n}"])

            return set(self._cached(json.dumps(["fields", fields]), snapshot, check))

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
    if clause.field == "department":
        return sql.SQL("EXISTS (SELECT FROM products p WHERE p.product_id = i.product_id AND p.department = ANY({}"
                       "::text[]))").format(param(values))
    if clause.field in _COLUMNS:
        return sql.SQL("{} = ANY({}::text[])").format(sql.SQL(_COLUMNS[clause.field]), param(values))
    # Open attributes: containment, which the GIN index serves (and which, like a keyword field, also matches a
    # value inside an array).
    return sql.SQL("({})").format(sql.SQL(" OR ").join(
        sql.SQL("a.attributes @> {}").format(param(Jsonb({clause.field: v}))) for v in values))
