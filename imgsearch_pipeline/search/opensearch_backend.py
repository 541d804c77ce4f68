"""Hybrid retrieval on OpenSearch: exact filters, BM25 and k-NN as two lists, fused by RRF, one hit per product.

The filters go inside the k-NN clause (Lucene's efficient filtering), so a restrictive filter never leaves the
vector list short; both sub-queries are sent in one `_msearch`.
"""

from __future__ import annotations

from collections.abc import Sequence

from opensearchpy import OpenSearch

from imgsearch_pipeline.search.fusion import best_per_group, rrf
from imgsearch_pipeline.search.plan import Clause, QueryPlan
from imgsearch_pipeline.search.results import Hit, HitAttributes, SearchResponse

_FIELDS = {"category": "category", "color": "colors", "pattern": "pattern", "department": "department"}
_SOURCE = ["image_id", "product_id", "s3_key", "category", "colors", "pattern", "has_print", "attributes",
           "description", "product_name", "brand"]


def field_for(clause: Clause) -> str:
    """The index field a clause filters: fixed fields, else an open attribute under `attributes.`."""
    return _FIELDS.get(clause.field, f"attributes.{clause.field}")


def filter_query(plan: QueryPlan) -> dict:
    """The plan's constraints as one bool query (terms are exact keyword matches, values never parsed)."""
    must = [{"terms": {field_for(c): list(c.values)}} for c in plan.filters]
    if plan.has_print is not None:
        must.append({"term": {"has_print": plan.has_print}})
    must_not = [{"terms": {field_for(c): list(c.values)}} for c in plan.exclude]
    return {"bool": {"filter": must, "must_not": must_not}}


def hybrid_search(
    client: OpenSearch,
    index: str,
    plan: QueryPlan,
    text: str,
    text_vector: Sequence[float] | None,
    size: int = 20,
    candidates: int = 200,
) -> SearchResponse:
    """Run BM25 over descriptions and k-NN over text vectors under the plan's filters; fuse; collapse."""
    flt = filter_query(plan)
    lexical = {
        "size": candidates,
        "_source": _SOURCE,
        "query": {"bool": {
            "filter": [flt],
            "should": [{"multi_match": {"query": text, "fields": ["description^2", "product_name", "brand.text"]}}]
            if text else [],
        }},
        "track_total_hits": False,
    }
    body: list[dict] = [{"index": index}, lexical]
    if text_vector is not None:
        body += [{"index": index}, {
            "size": candidates,
            "_source": _SOURCE,
            "query": {"knn": {"text_vector": {"vector": list(map(float, text_vector)), "k": candidates,
                                              "filter": flt}}},
        }]
    # How many products match at all (for "N products" and for honest empty results).
    body += [{"index": index}, {"size": 0, "query": flt,
                                "aggs": {"products": {"cardinality": {"field": "product_id"}}}}]
    responses = client.msearch(body=body)["responses"]
    for r in responses:
        if "error" in r:
            raise RuntimeError(f"OpenSearch query failed: {r['error']}")
    lists = [[h["_id"] for h in r["hits"]["hits"]] for r in responses[:-1]]
    sources = {h["_id"]: h["_source"] for r in responses[:-1] for h in r["hits"]["hits"]}
    fused = best_per_group(rrf(lists), {i: s["product_id"] for i, s in sources.items()}, size)
    hits = [_hit(sources[i], score, plan) for i, score in fused]
    total = responses[-1]["aggregations"]["products"]["value"]
    return SearchResponse(plan=plan, hits=hits, total_products=total)


def _hit(src: dict, score: float, plan: QueryPlan) -> Hit:
    attrs = HitAttributes(category=src.get("category"), colors=src.get("colors") or [], pattern=src.get("pattern"),
                          has_print=src.get("has_print"), attributes=src.get("attributes") or {},
                          description=src.get("description") or "")
    return Hit(product_id=src["product_id"], image_id=src["image_id"], s3_key=src["s3_key"], score=round(score, 6),
               product_name=src.get("product_name"), brand=src.get("brand"), attributes=attrs,
               matched=[c.text for c in plan.filters])
