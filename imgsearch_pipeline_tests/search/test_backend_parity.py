"""The same queries on OpenSearch and on PostgreSQL over the same ingested catalogue: the same answers.

One generated catalogue is ingested by the real Dagster job (Postgres, S3, OpenSearch); both backends then
search the same rows. Besides comparing the two, every answer is checked against an oracle: the live rows read
from Postgres with the plan applied in Python (`plan.violations`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pytest
from dagster import DagsterInstance

from imgsearch_pipeline.resources.search import postgres_backend
from imgsearch_pipeline.search.backend import FACET_FIELDS
from imgsearch_pipeline.search.opensearch_backend import OpenSearchBackend
from imgsearch_pipeline.search.plan import QueryPlan, field_values, violations
from imgsearch_pipeline.search.results import Hit, SearchResponse
from imgsearch_pipeline.search.service import SearchService
from imgsearch_pipeline.storage import opensearch as osx
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline_tests.harness import Pipeline

# Filters, negations, disjunctions, open attributes, residual text, an empty result and a pure residual.
QUERIES = [
    "red dress",
    "t-shirts not black",
    "shirts with no prints",
    "without stripes",
    "red or blue",
    "handbag or backpack",
    "green tee with long sleeves",
    "slim fit jeans",
    "leather not black",
    "not slim",
    "no t-shirts",
    "black not solid",
    "womens black",
    "printed",
    "floral summer party",
    "purple jeans",
    "cozy weekend vibes",
]
ALL = 100  # more than the catalogue's products: every matching product comes back


@dataclass
class World:
    pipeline: Pipeline
    model_version: str
    rows: list[dict]  # the live index rows, from Postgres
    services: dict[str, SearchService]

    def departments(self) -> dict[str, str | None]:
        return {r["product_id"]: r["department"] for r in self.rows}


def _give_open_attributes(conn) -> None:
    """The builtin provider sees no open attributes: give some items some, and leave others without."""
    conn.execute("""UPDATE image_analysis SET attributes = CASE
        WHEN category = 't-shirt' AND image_id % 3 = 0 THEN '{}'::jsonb
        WHEN category = 't-shirt' THEN jsonb_build_object(
            'sleeve_length', CASE WHEN image_id % 3 = 1 THEN 'long-sleeve' ELSE 'short-sleeve' END,
            'material', 'cotton')
        WHEN category = 'jeans' AND image_id % 2 = 0 THEN '{"fit": "slim"}'::jsonb
        WHEN category = 'jeans' THEN '{"fit": "regular"}'::jsonb
        WHEN category IN ('handbag', 'casual-shoes', 'sports-shoes') THEN '{"material": "leather"}'::jsonb
        ELSE attributes END""")


@pytest.fixture(scope="module")
def world(new_settings) -> World:
    pipeline = Pipeline(new_settings(), DagsterInstance.ephemeral())
    pipeline.run()
    res = pipeline.res
    provider = res["analysis"].get()
    version = provider.model_version
    with pipeline.db() as conn:
        _give_open_attributes(conn)
        conn.commit()
        pg.ensure_vector_indexes(conn, version, provider.image_dim, provider.text_dim)
        with conn.transaction():
            rows = list(pg.iter_index_rows(conn, version))
    client, alias = res["opensearch"].client(), res["opensearch"].alias
    osx.bulk_index(client, alias, rows)  # the changed attributes, in the index too
    client.indices.refresh(index=alias)
    assert osx.count(client, alias) == len(rows) == pipeline.n_images
    services = {
        "opensearch": SearchService(OpenSearchBackend(client, alias), provider),
        # The API's backend: pooled connections, k-NN lists beside the lexical ones.
        "postgres": SearchService(postgres_backend(res["postgres"].dsn, version), provider),
    }
    return World(pipeline, version, rows, services)


def _both(world: World, call) -> dict[str, SearchResponse]:
    out = {name: call(svc) for name, svc in world.services.items()}
    assert {r.backend for r in out.values()} == set(world.services)
    return out


def _doc(hit: Hit, departments: dict) -> dict:
    a = hit.attributes
    return {"category": a.category, "colors": a.colors, "pattern": a.pattern, "has_print": a.has_print,
            "attributes": a.attributes, "department": departments[hit.product_id]}


def _oracle(world: World, plan: QueryPlan) -> tuple[set[str], dict[str, list[tuple[str, int]]]]:
    """Matching products and facets computed in Python from the live rows (terms-aggregation order: most
    images first, ties by value)."""
    rows = [r for r in world.rows if not violations(plan, r)]
    facets = {}
    for name in FACET_FIELDS:
        images, products = defaultdict(set), defaultdict(set)
        for r in rows:
            for value in field_values(r, name):
                images[value].add(r["image_id"])
                products[value].add(r["product_id"])
        order = sorted(images, key=lambda v: (-len(images[v]), v.encode()))
        facets[name] = [(v, len(products[v])) for v in order[:30]]
    return {r["product_id"] for r in rows}, facets


def _facets(resp: SearchResponse) -> dict[str, list[tuple[str, int]]]:
    return {name: [(f.value, f.products) for f in counts] for name, counts in resp.facets.items()}


@pytest.mark.parametrize("query", QUERIES)
def test_hybrid_same_products_counts_and_facets(world, query):
    out = _both(world, lambda svc: svc.search(query, size=ALL))
    plan = out["postgres"].plan
    expected, facets = _oracle(world, plan)
    departments = world.departments()
    for name, resp in out.items():
        assert resp.total_products == len(expected), name
        assert {h.product_id for h in resp.hits} == expected, name
        assert len(resp.hits) == len(expected), name  # one hit per product
        assert _facets(resp) == facets, name
        for hit in resp.hits:
            assert violations(plan, _doc(hit, departments)) == [], (name, hit.product_id)
            assert hit.matched == [c.text for c in plan.filters]


def test_the_queries_cover_what_they_claim(world):
    plans = {q: world.services["postgres"].parse(q) for q in QUERIES}
    assert any(c.field == "sleeve_length" for c in plans["green tee with long sleeves"].filters)
    assert plans["not slim"].exclude[0].field == "fit"
    assert plans["shirts with no prints"].has_print is False
    assert len(plans["red or blue"].filters) == 1 and len(plans["red or blue"].filters[0].values) > 2
    assert plans["cozy weekend vibes"].residual and not plans["cozy weekend vibes"].filters
    sizes = {q: len(_oracle(world, p)[0]) for q, p in plans.items()}
    assert sizes["purple jeans"] == 0
    assert 0 < sizes["green tee with long sleeves"] < sizes["red or blue"] < len({r["product_id"] for r in world.rows})
    assert sizes["slim fit jeans"] > 0 and sizes["leather not black"] > 0


def test_missing_values_never_match_a_filter_nor_trigger_an_exclusion(world):
    out = _both(world, lambda svc: svc.search("no t-shirts", size=ALL))
    for resp in out.values():
        assert any(h.attributes.category is None for h in resp.hits)  # no category: not excluded
        assert all(h.attributes.category != "t-shirt" for h in resp.hits)
    out = _both(world, lambda svc: svc.search("not slim", size=ALL))
    for resp in out.values():
        assert any("fit" not in h.attributes.attributes for h in resp.hits)
    out = _both(world, lambda svc: svc.search("long sleeves", size=ALL))
    for resp in out.values():
        assert resp.hits and all(h.attributes.attributes.get("sleeve_length") == "long-sleeve" for h in resp.hits)


def test_a_small_page_is_the_same_size_with_the_same_count(world):
    out = _both(world, lambda svc: svc.search("black", size=3))
    assert {len(r.hits) for r in out.values()} == {3}
    assert len({r.total_products for r in out.values()}) == 1 and out["postgres"].total_products > 3


def _similarity(world: World, query: str) -> dict[str, float]:
    """Cosine similarity of each image's text vector to the query's."""
    q = np.asarray(world.services["postgres"].provider.embed_text([query])[0], dtype=np.float64)
    q /= np.linalg.norm(q)
    sims = {}
    for r in world.rows:
        v = np.asarray(json.loads(r["text_embedding"]), dtype=np.float64)  # the text form iter_index_rows reads
        sims[str(r["image_id"])] = float(q @ v / np.linalg.norm(v))
    return sims


@pytest.mark.parametrize("query", ["red floral dress", "black leather handbag", "green t-shirt"])
def test_vector_mode_same_order(world, query):
    """Exact k-NN on both sides (tiny data): the same products in the same order. Many items share one
    description, hence one text vector: products tied on similarity may come in either order, so the order
    is compared on (similarity, product), ties grouped."""
    sims = _similarity(world, query)
    out = _both(world, lambda svc: svc.search(query, size=ALL, mode="vector"))
    orders = {}
    for name, resp in out.items():
        assert resp.total_products == len(resp.hits) == len({r["product_id"] for r in world.rows}), name
        s = [sims[h.image_id] for h in resp.hits]
        assert all(a >= b - 1e-5 for a, b in zip(s, s[1:], strict=False)), name  # best first
        # each hit is its product's most similar image
        best = defaultdict(float)
        for r in world.rows:
            best[r["product_id"]] = max(best[r["product_id"]], sims[str(r["image_id"])])
        assert all(abs(sims[h.image_id] - best[h.product_id]) < 1e-5 for h in resp.hits), name
        orders[name] = sorted((-round(sims[h.image_id], 4), h.product_id) for h in resp.hits)
    assert orders["opensearch"] == orders["postgres"]
    top = {name: resp.hits[0].product_id for name, resp in out.items()}
    tied_at_top = {p for s, p in orders["postgres"] if s == orders["postgres"][0][0]}
    assert set(top.values()) <= tied_at_top


def _lexemes(world: World, text: str) -> set[str]:
    with world.pipeline.db() as conn:
        row = conn.execute("SELECT tsvector_to_array(to_tsvector('english', %s)) AS en, "
                           "tsvector_to_array(to_tsvector('simple', %s)) AS si", (text, text)).fetchone()
    return set(row["en"]) | set(row["si"])


@pytest.mark.parametrize("query", ["striped shirts", "flowers", "leather wallet", "Larkspur", "zzyzx qwerty"])
def test_keyword_mode_matches_words(world, query):
    out = _both(world, lambda svc: svc.search(query, size=ALL, mode="keyword"))
    words = _lexemes(world, query)
    products = {}
    for name, resp in out.items():
        assert resp.total_products == len({r["product_id"] for r in world.rows}), name  # no filters
        for hit in resp.hits:
            text = " ".join(x or "" for x in (hit.attributes.description, hit.product_name, hit.brand))
            assert words & _lexemes(world, text), (name, hit.product_id)
        products[name] = {h.product_id for h in resp.hits}
    assert products["opensearch"] == products["postgres"]
    if query == "zzyzx qwerty":
        assert products["postgres"] == set()
    else:
        assert products["postgres"]


def test_keyword_mode_reaches_name_and_brand(world):
    """'wallet' is only in a product name, 'Larkspur' only in brands (and names): both fields are searched."""
    for query, field in (("wallet", "product_name"), ("larkspur", "brand")):
        out = _both(world, lambda svc, q=query: svc.search(q, size=ALL, mode="keyword"))
        for resp in out.values():
            assert resp.hits and all(query in (getattr(h, field) or "").lower() for h in resp.hits)


def _source_image(world: World, category: str) -> dict:
    return next(r for r in world.rows if r["category"] == category)


@pytest.mark.parametrize(("category", "query"), [("dress", ""), ("handbag", ""), ("t-shirt", "green"),
                                                 ("shirt", "no prints")])
def test_more_like_this_excludes_the_source_product(world, category, query):
    source = _source_image(world, category)
    out = _both(world, lambda svc: svc.similar(image_id=str(source["image_id"]), query=query, size=ALL))
    plan = out["postgres"].plan
    expected, facets = _oracle(world, plan)
    expected.discard(source["product_id"])
    departments = world.departments()
    for name, resp in out.items():
        assert resp.hits, name
        assert source["product_id"] not in {h.product_id for h in resp.hits}, name
        assert {h.product_id for h in resp.hits} == expected, name
        assert resp.total_products == len(expected), name
        assert all(violations(plan, _doc(h, departments)) == [] for h in resp.hits), name
    assert out["opensearch"].hits[0].product_id == out["postgres"].hits[0].product_id
    assert [h.product_id for h in out["opensearch"].hits[:5]] == [h.product_id for h in out["postgres"].hits[:5]]


def test_indexed_image_is_the_same(world):
    source = _source_image(world, "dress")
    backends = {name: svc.backend for name, svc in world.services.items()}
    got = {name: b.indexed_image(str(source["image_id"])) for name, b in backends.items()}
    assert got["postgres"].product_id == got["opensearch"].product_id == source["product_id"]
    assert np.allclose(got["postgres"].image_vector, got["opensearch"].image_vector, atol=1e-6)
    for missing in ("999999", "abc", "", "1 OR 1=1"):
        assert backends["postgres"].indexed_image(missing) is None
    assert backends["opensearch"].indexed_image("999999") is None


@pytest.mark.parametrize("text", ["'; DROP TABLE products; --", "\\", "%", ":*", "!", "&|", "red') OR 1=1 --",
                                  "dress & !(floral) | 'x':*", "%s %(x)s {}"])
def test_hostile_query_text_is_just_text(world, text):
    for mode in ("hybrid", "keyword", "vector"):
        out = _both(world, lambda svc, m=mode: svc.search(text, size=ALL, mode=m))
        assert out["postgres"].total_products == out["opensearch"].total_products
        if mode == "keyword":
            assert ({h.product_id for h in out["postgres"].hits} == {h.product_id for h in out["opensearch"].hits})
    with world.pipeline.db() as conn:
        assert conn.execute("SELECT count(*) AS n FROM products").fetchone()["n"] == len(world.pipeline.products)


def test_selective_filter_with_a_vector_query_returns_every_match(world):
    """Few items match: the k-NN list (here the only list) must not come back short."""
    plan_query = "polka dot"
    source = next(r for r in world.rows if r["pattern"] != "polka-dot")
    out = _both(world, lambda svc: svc.similar(image_id=str(source["image_id"]), query=plan_query, size=ALL))
    expected, _ = _oracle(world, out["postgres"].plan)
    expected.discard(source["product_id"])
    assert 0 < len(expected) <= 3
    for resp in out.values():
        assert {h.product_id for h in resp.hits} == expected


def test_both_backends_agree_on_which_optional_fields_have_values(world):
    fields = ["department", "sleeve_length", "neckline", "material", "fit"]
    answers = {name: svc.backend.fields_with_values(fields) for name, svc in world.services.items()}
    assert answers["opensearch"] == answers["postgres"] == {"department", "sleeve_length", "material", "fit"}
