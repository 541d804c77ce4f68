"""The PostgreSQL search backend on a real PostgreSQL 18 + pgvector server, over a synthetic table large enough
for the planner to choose the HNSW index (2,000 images), plus rows that must never be found."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from imgsearch_pipeline.search.backend import SearchRequest
from imgsearch_pipeline.search.plan import Clause, QueryPlan
from imgsearch_pipeline.search.postgres_backend import PostgresBackend
from imgsearch_pipeline.search.results import SearchResponse
from imgsearch_pipeline.storage import postgres as pg

VERSION = "m'1\\x"  # quotes and a backslash: the literal in the index predicate must survive them
N = 2000  # images, two per product
RARE = 20  # images with the open attribute fit=slim (every 100th), on 20 products
IMAGE_DIM, TEXT_DIM = 8, 4


@dataclass
class Db:
    dsn: str

    @contextmanager
    def connect(self, *settings: str) -> Iterator[psycopg.Connection]:
        """Like PostgresResource.connect; `settings` are session SETs (to steer the planner in a test)."""
        conn = pg.connect(self.dsn)
        try:
            for s in settings:
                conn.execute(s)
            yield conn
            conn.commit()
        finally:
            conn.close()

    def backend(self, *settings: str, cls: type[PostgresBackend] = PostgresBackend) -> PostgresBackend:
        return cls(lambda: self.connect(*settings), VERSION)


@pytest.fixture(scope="module")
def db(new_database) -> Db:
    d = Db(new_database())
    with d.connect() as conn:
        pg.migrate(conn)
        assert len(pg.ensure_vector_indexes(conn, VERSION, IMAGE_DIM, TEXT_DIM)) == 2  # empty: built at once
        conn.execute("INSERT INTO products (product_id, name, brand, department) SELECT 'p' || g, "
                     "CASE WHEN g %% 2 = 0 THEN 'Cosy knit' ELSE 'Plain thing' END, "
                     "CASE WHEN g %% 5 = 0 THEN 'Loops' END, (ARRAY['men', 'women'])[1 + g %% 2] "
                     "FROM generate_series(1, %s) g", (N // 2 + 10,))
        conn.execute("INSERT INTO product_images (s3_key, product_id, partition_key, content_hash, status) "
                     "SELECT 'k' || g, 'p' || ((g - 1) / 2 + 1), 'x/', 'h', 'analysed' FROM generate_series(1, %s) g",
                     (N,))
        conn.execute(
            "INSERT INTO image_analysis (image_id, model_version, content_hash, category, colors, pattern, has_print,"
            " attributes, description, image_embedding, text_embedding, vocab_version) "
            "SELECT image_id, %(v)s, 'h', CASE WHEN image_id %% 10 = 0 THEN NULL "
            " ELSE (ARRAY['dress', 't-shirt', 'jeans'])[1 + image_id %% 3] END,"
            " ARRAY[(ARRAY['red', 'black', 'navy'])[1 + image_id %% 3]], 'solid',"
            " CASE WHEN image_id %% 7 = 0 THEN NULL ELSE image_id %% 2 = 0 END,"
            " CASE WHEN image_id %% 100 = 0 THEN '{\"fit\": \"slim\"}'::jsonb ELSE '{}' END,"
            " CASE WHEN image_id %% 3 = 0 THEN 'Red striped dress with flowers' ELSE 'Black jeans' END,"
            # Deterministic, well spread vectors.
            " (SELECT array_agg(sin(image_id * (k + 0.5) * 1.7 + k))::vector FROM generate_series(1, 8) k),"
            " (SELECT array_agg(cos(image_id * (k + 0.3) * 2.9 + k))::vector FROM generate_series(1, 4) k), 'v1' "
            "FROM product_images", {"v": VERSION})
        # Rows no search may return: pending bytes, an analysis of other bytes, another model version.
        conn.execute("INSERT INTO products (product_id) SELECT 'ghost' || g FROM generate_series(1, 6) g")
        conn.execute(
            "INSERT INTO product_images (s3_key, product_id, partition_key, content_hash, status) "
            "SELECT 'ghost' || g, 'ghost' || g, 'x/', 'h', CASE WHEN g <= 3 THEN 'pending' ELSE 'analysed' END "
            "FROM generate_series(1, 6) g")
        conn.execute(
            "INSERT INTO image_analysis (image_id, model_version, content_hash, category, colors, attributes,"
            " description, image_embedding, text_embedding, vocab_version) "
            "SELECT image_id, %(v)s, CASE WHEN s3_key IN ('ghost4', 'ghost5', 'ghost6') THEN 'old' ELSE 'h' END,"
            " 'dress', '{red}', '{\"fit\": \"slim\"}', 'ghost zebra', "
            " '[1,1,1,1,1,1,1,1]', '[1,1,1,1]', 'v1' FROM product_images WHERE s3_key LIKE 'ghost%%'",
            {"v": VERSION})
        conn.execute(
            "INSERT INTO image_analysis (image_id, model_version, content_hash, category, colors, attributes,"
            " description, image_embedding, text_embedding, vocab_version) "
            "SELECT image_id, 'm0', 'h', 'dress', '{red}', '{\"fit\": \"slim\"}', 'ghost zebra',"
            " '[1,1,1,1,1,1,1,1]', '[1,1,1,1]', 'v1' FROM product_images WHERE image_id <= 50")
        conn.commit()
        conn.execute("ANALYZE")
    return d


def _plan(*filters: Clause, exclude: tuple[Clause, ...] = (), has_print: bool | None = None) -> QueryPlan:
    return QueryPlan(query="q", filters=list(filters), exclude=list(exclude), has_print=has_print)


SLIM = Clause(field="fit", values=["slim"], text="slim")
QUERY_IMAGE = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.4, 0.6]


def _hnsw_indexes(conn) -> list[dict]:
    return conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'image_analysis' "
                        "AND indexdef LIKE '%%USING hnsw%%' ORDER BY indexname").fetchall()


def _explain(conn, backend: PostgresBackend, plan: QueryPlan | None, field: str = "image", dim: int = IMAGE_DIM,
             exclude_products: list[str] = ()) -> str:
    where, params = backend.where(plan, exclude_products)
    vec = "[" + ",".join(["0.5"] * dim) + "]"
    rows = conn.execute(sql.SQL("EXPLAIN ") + backend.knn_sql(field, dim, where), params | {"vec": vec, "k": 50})
    return "\n".join(r["QUERY PLAN"] for r in rows)


def test_ensure_vector_indexes_is_idempotent(db):
    with db.connect() as conn:
        before = _hnsw_indexes(conn)
        assert pg.ensure_vector_indexes(conn, VERSION, IMAGE_DIM, TEXT_DIM) == []
        assert _hnsw_indexes(conn) == before and len(before) == 2
        names = {r["indexname"] for r in before}
        assert names == {pg.vector_index_name(VERSION, "image_embedding", IMAGE_DIM),
                         pg.vector_index_name(VERSION, "text_embedding", TEXT_DIM)}
        assert all("WHERE (model_version = 'm''1\\x'::text)" in r["indexdef"] for r in before)
        assert "(image_embedding)::vector(8)) vector_cosine_ops" in " ".join(r["indexdef"] for r in before)
        # Another version gets its own indexes: above 2000 dimensions a halfvec one, above 4000 none.
        other = pg.ensure_vector_indexes(conn, "m9", 3000, 5000)
        assert other == [pg.vector_index_name("m9", "image_embedding", 3000)]
        defs = {r["indexname"]: r["indexdef"] for r in _hnsw_indexes(conn)}
        assert "halfvec(3000)) halfvec_cosine_ops" in defs[other[0]] and len(defs) == 3
        conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(other[0])))


def test_knn_query_uses_the_versions_hnsw_index(db):
    backend = db.backend()
    image_index = pg.vector_index_name(VERSION, "image_embedding", IMAGE_DIM)
    text_index = pg.vector_index_name(VERSION, "text_embedding", TEXT_DIM)
    with db.connect() as conn:
        assert f"Index Scan using {image_index}" in _explain(conn, backend, None)
        assert f"Index Scan using {text_index}" in _explain(conn, backend, None, "text", TEXT_DIM)
        # Under a filter that keeps most items, including conditions on the image and its product (current bytes,
        # department, excluded products), the index yields candidates and each is checked: no scan of every row.
        # (A filter keeping a third of these 2,000 items is scanned exactly, rightly: that is cheaper here.)
        broad = _plan(exclude=(Clause(field="category", values=["dress"], text="dress"),
                               Clause(field="department", values=["kids"], text="kids")))
        assert f"Index Scan using {image_index}" in _explain(conn, backend, broad, exclude_products=["p1", "p2"])
        dresses = _plan(Clause(field="category", values=["dress"], text="dress"))
        assert image_index not in _explain(conn, backend, dresses)
        # Another model version's query cannot use this version's partial index.
        assert image_index not in _explain(conn, PostgresBackend(db.connect, "m0"), None)


# Make the planner walk the HNSW index even for a 1% filter (it would rather scan those rows exactly).
_FORCE_HNSW = ("SET enable_seqscan = off", "SET enable_bitmapscan = off", "SET enable_sort = off")


class _NoExactScan(PostgresBackend):
    def knn_sql(self, field, dim, where, exact=False):
        assert not exact, "the index scan came back short"
        return super().knn_sql(field, dim, where, exact)


def test_iterative_scan_keeps_a_selective_filter_from_starving(db):
    req = SearchRequest(plan=_plan(SLIM), mode="image", image_vector=QUERY_IMAGE, size=15, candidates=15,
                        facets=False)
    backend = db.backend(*_FORCE_HNSW, cls=_NoExactScan)
    with db.connect(*_FORCE_HNSW) as conn:
        assert "hnsw" in _explain(conn, backend, req.plan)
        # Without iterative scans the same query finds almost nothing: ef_search candidates, then the filter.
        where, params = backend.where(req.plan)
        conn.execute("SET hnsw.iterative_scan = off")
        conn.execute("SET hnsw.ef_search = 40")
        plain = conn.execute(backend.knn_sql("image", IMAGE_DIM, where),
                             params | {"vec": str(QUERY_IMAGE).replace(" ", ""), "k": 15}).fetchall()
    assert len(plain) < 5
    resp = backend.search(req)
    assert len(resp.hits) == 15 and resp.total_products == RARE
    assert all(h.attributes.attributes == {"fit": "slim"} for h in resp.hits)
    # Nearly the same as an exact search (HNSW is approximate).
    exact = db.backend("SET enable_indexscan = off").search(req)
    assert len({h.image_id for h in exact.hits} & {h.image_id for h in resp.hits}) >= 12


class _GivesUpEarly(PostgresBackend):
    MAX_SCAN_TUPLES = 1
    MAX_EF_SEARCH = 40
    calls: list[bool] = []

    def knn_sql(self, field, dim, where, exact=False):
        self.calls.append(exact)
        return super().knn_sql(field, dim, where, exact)


def test_a_short_index_scan_falls_back_to_an_exact_one(db):
    backend = db.backend(*_FORCE_HNSW, cls=_GivesUpEarly)
    req = SearchRequest(plan=_plan(SLIM), mode="image", image_vector=QUERY_IMAGE, size=100, candidates=100)
    resp = backend.search(req)
    assert backend.calls == [False, True]
    assert len(resp.hits) == resp.total_products == RARE


def test_only_live_rows_of_the_model_version_are_found(db):
    backend = db.backend()
    for req in (SearchRequest(plan=_plan(SLIM), mode="image", image_vector=[1.0] * 8, size=100),
                SearchRequest(plan=_plan(SLIM), mode="hybrid", text="ghost zebra", text_vector=[1.0] * 4, size=100),
                SearchRequest(plan=_plan(), mode="keyword", text="ghost zebra", size=100),
                SearchRequest(plan=_plan(), mode="vector", text_vector=[1.0] * 4, size=100)):
        resp = backend.search(req)
        assert not any(h.product_id.startswith("ghost") for h in resp.hits), req.mode
        assert all(h.attributes.description != "ghost zebra" for h in resp.hits), req.mode
    assert backend.search(SearchRequest(plan=_plan(), mode="keyword", text="zebra")).hits == []
    assert backend.search(SearchRequest(plan=_plan(), mode="vector", text_vector=[1.0] * 4)).total_products == N // 2
    with db.connect() as conn:
        ghosts = [r["image_id"] for r in conn.execute(
            "SELECT image_id FROM product_images WHERE s3_key LIKE 'ghost%%'")]
    assert [backend.indexed_image(str(i)) for i in ghosts] == [None] * 6
    assert PostgresBackend(db.connect, "m0").indexed_image("1").image_vector == [1.0] * 8
    got = backend.indexed_image("1")
    assert got.product_id == "p1" and len(got.image_vector) == IMAGE_DIM and got.image_vector != [1.0] * 8
    assert backend.indexed_image("01") is None and backend.indexed_image("1; SELECT 1") is None


def test_filters_missing_values_and_exclusions(db):
    backend = db.backend()

    def products(plan: QueryPlan) -> tuple[int, list]:
        resp = backend.search(SearchRequest(plan=plan, mode="hybrid", size=100, facets=False))
        return resp.total_products, resp.hits

    total, _ = products(_plan())
    assert total == N // 2
    # Category is missing on every 10th image: never a dress, never excluded as one.
    _, hits = products(_plan(Clause(field="category", values=["dress", "jeans"], text="d"), has_print=True))
    assert hits and all(h.attributes.category in ("dress", "jeans") and h.attributes.has_print for h in hits)
    total_not_dress, hits = products(_plan(exclude=(Clause(field="category", values=["dress"], text="d"),)))
    assert total_not_dress == total  # every product has a non-dress image (two images, categories differ)
    resp = backend.search(SearchRequest(plan=_plan(exclude=(Clause(field="category", values=["dress"], text="d"),)),
                                        mode="hybrid", size=100, candidates=2000))
    assert any(h.attributes.category is None for h in resp.hits)
    # has_print is missing on every 7th image: it matches neither True nor False.
    with db.connect() as conn:
        truth = {v: conn.execute(
            "SELECT count(DISTINCT i.product_id) AS n FROM image_analysis a JOIN product_images i USING (image_id) "
            "WHERE a.model_version = %s AND a.has_print = %s AND i.status = 'analysed'", (VERSION, v)).fetchone()["n"]
            for v in (True, False)}
    for value in (True, False):
        total, hits = products(_plan(has_print=value))
        assert total == truth[value] and all(h.attributes.has_print is value for h in hits)
    both = products(_plan(Clause(field="color", values=["red"], text="red"), has_print=False))[1]
    assert all(h.attributes.colors == ["red"] and h.attributes.has_print is False for h in both)
    # An exclusion on an open attribute keeps items without the attribute; an empty clause matches nothing.
    total, _ = products(_plan(exclude=(SLIM,)))
    assert total == N // 2  # the slim images' products have a second, non-slim image
    assert products(_plan(Clause(field="color", values=[], text="x")))[0] == 0
    assert products(_plan(Clause(field="department", values=["women"], text="w"), SLIM))[0] == 0  # slim: even ids
    assert products(_plan(Clause(field="department", values=["men"], text="m"), SLIM))[0] == RARE


def test_lexical_list_is_an_or_of_the_words_best_fields_first(db):
    backend = db.backend()
    resp = backend.search(SearchRequest(plan=_plan(), mode="keyword", text="zebra flowers", size=100))
    assert resp.hits and all("flowers" in h.attributes.description for h in resp.hits)  # OR: zebra is nowhere
    # 'knit' is only in product names, 'loops' only in brands (simple config: not stemmed to 'loop').
    knit = backend.search(SearchRequest(plan=_plan(), mode="keyword", text="knitted", size=100))
    assert knit.hits and all(h.product_name == "Cosy knit" for h in knit.hits)
    loops = backend.search(SearchRequest(plan=_plan(), mode="keyword", text="Loops", size=100))
    assert loops.hits and all(h.brand == "Loops" for h in loops.hits)
    # Only stopwords and symbols: nothing to match, no error.
    for text in ("the of and", "!&|:*", "'"):
        assert backend.search(SearchRequest(plan=_plan(), mode="keyword", text=text)).hits == []
    # Hybrid: every filtered item is a candidate, the matching ones first.
    hybrid = backend.search(SearchRequest(plan=_plan(), mode="hybrid", text="striped", size=10, facets=False))
    assert all("striped" in h.attributes.description for h in hybrid.hits)


def test_facets_count_products_on_the_filtered_set(db):
    resp = db.backend().search(SearchRequest(plan=_plan(SLIM), mode="hybrid", size=5))
    assert resp.total_products == RARE and len(resp.hits) == 5
    colors = {f.value: f.products for f in resp.facets["color"]}
    assert sum(colors.values()) == RARE and set(colors) <= {"red", "black", "navy"}
    assert [(f.value, f.products) for f in resp.facets["pattern"]] == [("solid", RARE)]
    assert resp.facets["category"] == []  # the slim images have no category: missing values are no bucket
    everything = db.backend().search(SearchRequest(plan=_plan(), mode="hybrid", size=1))
    assert [f.value for f in everything.facets["category"]] == ["dress", "jeans", "t-shirt"]  # most images first
    assert all(f.products <= N // 2 for f in everything.facets["category"])


def _brute_force_lexical(conn, backend: PostgresBackend, text: str, plan: QueryPlan | None, k: int,
                         must_match: bool) -> list[int]:
    """The lexical list by its definition: every filtered item scored (the best of twice the description's
    ts_rank, the name's and the brand's), best first, ties by id; `must_match`: only items sharing a word."""
    where, params = backend.where(plan)
    tsq = ("(SELECT string_agg(quote_literal(lexeme), ' | ') FROM unnest(to_tsvector('{}'::regconfig, %(text)s)))"
           "::tsquery")
    en, si = sql.SQL(tsq.format("english")), sql.SQL(tsq.format("simple"))
    name = sql.SQL("to_tsvector('english'::regconfig, coalesce(p.name, ''))")
    brand = sql.SQL("to_tsvector('simple'::regconfig, coalesce(p.brand, ''))")
    match = sql.SQL(" AND (a.description_tsv @@ {en} OR {name} @@ {en} OR {brand} @@ {si})").format(
        en=en, si=si, name=name, brand=brand) if must_match else sql.SQL("")
    query = sql.SQL(
        "SELECT a.image_id FROM image_analysis a JOIN product_images i ON i.image_id = a.image_id "
        "AND i.content_hash = a.content_hash JOIN products p ON p.product_id = i.product_id WHERE {where}{match} "
        "ORDER BY coalesce(greatest(2 * ts_rank(a.description_tsv, {en}, 1), ts_rank({name}, {en}, 1), "
        "ts_rank({brand}, {si}, 1)), 0) DESC, a.image_id LIMIT %(k)s").format(
        where=where, match=match, en=en, si=si, name=name, brand=brand)
    return [r["image_id"] for r in conn.execute(query, params | {"text": text, "k": k})]


@pytest.mark.parametrize("text", ["striped flowers", "knitted", "Loops", "dress loops", "zebra", "the of and"])
def test_lexical_list_ranks_like_scoring_every_filtered_item(db, text):
    """Only the items sharing a word are ranked, the others follow by id: the same list as ranking them all.
    Many items share a description (equal scores), so ties by id are exercised; k above the number of matching
    items exercises the rest of the list."""
    backend = db.backend()
    plans = [None, _plan(Clause(field="category", values=["dress", "jeans"], text="d")),
             _plan(Clause(field="department", values=["women"], text="w"),
                   exclude=(Clause(field="color", values=["red"], text="r"),))]
    with db.connect() as conn:
        for plan in plans:
            where, params = backend.where(plan)
            for k in (5, 300, N + 10):
                for must_match in (False, True):
                    got = [r["image_id"] for r in backend._lexical(conn, text, where, params, k, must_match)]
                    assert got == _brute_force_lexical(conn, backend, text, plan, k, must_match), (plan, k, must_match)


class _CountingBackend(PostgresBackend):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.counted = 0

    def _counts(self, *args):
        self.counted += 1
        return super()._counts(*args)


def test_counts_are_remembered_until_the_data_changes(db):
    backend = db.backend(cls=_CountingBackend)
    dresses = _plan(Clause(field="category", values=["dress"], text="dress"))

    def search(plan: QueryPlan) -> SearchResponse:
        return backend.search(SearchRequest(plan=plan, mode="hybrid", text="striped", text_vector=[1.0] * 4, size=5))

    def dress_products(resp: SearchResponse) -> int:
        return next(f.products for f in resp.facets["category"] if f.value == "dress")

    def counts(resp: SearchResponse) -> tuple:
        return resp.total_products, resp.facets

    before, dressed = search(_plan()), search(dresses)
    assert search(_plan()) == before and search(dresses) == dressed
    assert backend.counted == 2  # one per filter; the repeats were answered from memory
    assert backend.fields_with_values(["neckline", "fit"]) == {"fit"}
    try:
        with db.connect() as conn:  # an ingest: a new product with an analysed image
            conn.execute("INSERT INTO products (product_id, department) VALUES ('fresh', 'women')")
            image_id = conn.execute(
                "INSERT INTO product_images (s3_key, product_id, partition_key, content_hash, status) "
                "VALUES ('fresh', 'fresh', 'x/', 'h', 'analysed') RETURNING image_id").fetchone()["image_id"]
            conn.execute(
                "INSERT INTO image_analysis (image_id, model_version, content_hash, category, attributes,"
                " vocab_version) VALUES (%s, %s, 'h', 'dress', '{\"neckline\": \"v-neck\"}', 'v1')",
                (image_id, VERSION))
        after = search(_plan())
        assert after.total_products == before.total_products + 1 and backend.counted == 3
        assert dress_products(after) == dress_products(before) + 1
        assert search(dresses).total_products == dressed.total_products + 1
        assert backend.fields_with_values(["neckline", "fit"]) == {"neckline", "fit"}
        with db.connect() as conn:  # the inventory saw the object deleted
            conn.execute("UPDATE product_images SET status = 'deleted' WHERE s3_key = 'fresh'")
        assert search(_plan()).total_products == before.total_products
        assert backend.fields_with_values(["neckline", "fit"]) == {"fit"}
    finally:
        with db.connect() as conn:
            conn.execute("DELETE FROM products WHERE product_id = 'fresh'")
    assert counts(search(_plan())) == counts(before) and backend.counted == 6


def test_knn_lists_apart_answer_as_on_one_connection_and_never_wait_on_each_other(db):
    """Eight searches at once, with two connections for searches and one for the k-NN lists run beside them:
    every search answers what the backend answers on one connection. (Were the lists' connections drawn from
    the searches' pool, two searches holding both would each wait for the other's.)"""
    searches, lists = pg.pool(db.dsn, 2), pg.pool(db.dsn, 1)
    try:
        apart = PostgresBackend(searches.connection, VERSION, connect_apart=lists.connection, lists_apart=1)
        requests = [SearchRequest(plan=_plan(*clauses), mode="hybrid", text=text, text_vector=vector, size=10)
                    for text, vector, clauses in [
                        ("striped", [1.0, 0.0, 0.5, 0.2], ()),
                        ("black jeans", [0.1, 0.9, -0.3, 0.0], (Clause(field="color", values=["black"], text="b"),)),
                        ("flowers", [-0.5, 0.2, 0.8, 0.1], (Clause(field="category", values=["dress"], text="d"),)),
                        ("knitted", [0.3, -0.7, 0.1, 0.6], ())]]
        expected = [db.backend().search(r) for r in requests]
        with ThreadPoolExecutor(8) as threads:
            answers = list(threads.map(apart.search, requests * 2, timeout=60))
        assert answers == expected * 2
        assert all(r.hits for r in expected)
    finally:
        searches.close()
        lists.close()


def test_pooled_connections_the_server_dropped_are_replaced_not_handed_out(db):
    """The server ends every connection of the pools (a restart, a failover, an idle timeout): the next search
    still answers, on new connections."""
    searches, lists = pg.pool(db.dsn, 2), pg.pool(db.dsn, 2)
    try:
        backend = PostgresBackend(searches.connection, VERSION, connect_apart=lists.connection, lists_apart=2)
        request = SearchRequest(plan=_plan(), mode="hybrid", text="striped", text_vector=[1.0, 0.0, 0.5, 0.2])
        before = backend.search(request)
        with db.connect() as conn:
            ended = conn.execute("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()["n"]
        assert ended >= 2  # a search connection and a list connection at least
        assert backend.search(request) == before
    finally:
        searches.close()
        lists.close()
