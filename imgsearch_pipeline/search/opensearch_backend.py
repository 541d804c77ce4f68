"""Retrieval on OpenSearch: exact filters, BM25 and k-NN as separate lists, fused by RRF, one hit per product.

The filters go inside the k-NN clause (Lucene's efficient filtering), so a restrictive filter never leaves the
vector list short; every list, the product count and the facets travel in one `_msearch`.
"""

from __future__ import annotations

from opensearchpy import NotFoundError, OpenSearch

from imgsearch_pipeline.search.backend import FACET_FIELDS, IndexedImage, SearchRequest
from imgsearch_pipeline.search.fusion import best_per_group, rrf
from imgsearch_pipeline.search.plan import Clause, QueryPlan
from imgsearch_pipeline.search.results import FacetCount, Hit, SearchResponse

_FIELDS = {"category": "category", "color": "colors", "pattern": "pattern", "department": "department"}
_SOURCE = ["image_id", "product_id", "s3_key", "category", "colors", "pattern", "has_print", "attributes",
           "description", "product_name", "brand", "department"]
FACET_SIZE = 30
# Candidate lists return ids and product ids (doc values) only: loading the stored source of every candidate
# (vectors included, ~19 KB each with the builtin provider) cost more than the searches themselves. The
# documents of the hits shown come by one mget after fusion.
_IDS_ONLY = {"_source": False, "docvalue_fields": ["product_id"]}


def field_for(clause: Clause) -> str:
    """The index field a clause filters: fixed fields, else an open attribute under `attributes.`."""
    return _FIELDS.get(clause.field, f"attributes.{clause.field}")


def filter_query(plan: QueryPlan | None, exclude_products: list[str] = ()) -> dict:
    """The plan's constraints as one bool query (terms are exact keyword matches, values never parsed)."""
    must, must_not = [], []
    if plan is not None:
        must = [{"terms": {field_for(c): list(c.values)}} for c in plan.filters]
        if plan.has_print is not None:
            must.append({"term": {"has_print": plan.has_print}})
        must_not = [{"terms": {field_for(c): list(c.values)}} for c in plan.exclude]
    if exclude_products:
        must_not.append({"terms": {"product_id": list(exclude_products)}})
    return {"bool": {"filter": must, "must_not": must_not}}


class OpenSearchBackend:
    name = "opensearch"

    def __init__(self, client: OpenSearch, index: str) -> None:
        self.client, self.index = client, index

    def search(self, req: SearchRequest) -> SearchResponse:
        flt = filter_query(req.plan if req.filtered else None, req.exclude_products)
        lists: list[dict] = []
        if req.mode in ("hybrid", "keyword") and (req.text or req.mode == "hybrid"):
            match = [{"multi_match": {"query": req.text, "fields": ["description^2", "product_name",
                                                                      "brand.text"]}}] if req.text else []
            # hybrid: every filtered item is a candidate, BM25 orders them; keyword: only items that match.
            query = {"bool": {"filter": [flt], "should": match}} if req.mode == "hybrid" else \
                {"bool": {"filter": [flt], "must": match}}
            lists.append({"size": req.candidates, **_IDS_ONLY, "query": query, "track_total_hits": False})
        vector_field, vector = {"hybrid": ("text_vector", req.text_vector), "vector": ("text_vector", req.text_vector),
                                "image": ("image_vector", req.image_vector)}.get(req.mode, (None, None))
        if vector is not None:
            lists.append({"size": req.candidates, **_IDS_ONLY, "query": {"knn": {vector_field: {
                "vector": [float(x) for x in vector], "k": req.candidates, "filter": flt}}}})
        # How many products match at all (for "N products" and honest empty pages), and the facets.
        aggs: dict = {"products": {"cardinality": {"field": "product_id"}}}
        if req.facets:
            for name in FACET_FIELDS:
                aggs[f"facet_{name}"] = {"terms": {"field": _FIELDS[name], "size": FACET_SIZE},
                                         "aggs": {"products": {"cardinality": {"field": "product_id"}}}}
        body: list[dict] = []
        for q in [*lists, {"size": 0, "query": flt, "aggs": aggs}]:
            body += [{"index": self.index}, q]
        responses = self.client.msearch(body=body)["responses"]
        for r in responses:
            if "error" in r:
                raise RuntimeError(f"OpenSearch query failed: {r['error']}")
        ranked = [[h["_id"] for h in r["hits"]["hits"]] for r in responses[:-1]]
        products = {h["_id"]: h["fields"]["product_id"][0] for r in responses[:-1] for h in r["hits"]["hits"]}
        fused = best_per_group(rrf(ranked), products, req.size)
        sources = self._sources([i for i, _ in fused])
        counts = responses[-1]["aggregations"]
        facets = {name: [FacetCount(value=b["key"], products=b["products"]["value"])
                         for b in counts[f"facet_{name}"]["buckets"]] for name in FACET_FIELDS if req.facets}
        hits = [Hit.from_document(sources[i], score, req.plan) for i, score in fused if i in sources]
        return SearchResponse(plan=req.plan, hits=hits, total_products=counts["products"]["value"], facets=facets,
                              mode=req.mode, backend=self.name)

    def _sources(self, ids: list[str]) -> dict[str, dict]:
        """The stored documents of the hits shown (the candidate lists carry ids and product ids only)."""
        if not ids:
            return {}
        docs = self.client.mget(index=self.index, body={"ids": ids}, _source_includes=_SOURCE)["docs"]
        return {d["_id"]: d["_source"] for d in docs if d.get("found")}

    def fields_with_values(self, fields: list[str]) -> set[str]:
        aggs = {f"has_{i}": {"filter": {"exists": {"field": _FIELDS.get(f, f"attributes.{f}")}}}
                for i, f in enumerate(fields)}
        response = self.client.search(index=self.index, body={"size": 0, "aggs": aggs})
        return {f for i, f in enumerate(fields) if response["aggregations"][f"has_{i}"]["doc_count"]}

    def indexed_image(self, image_id: str) -> IndexedImage | None:
        try:
            doc = self.client.get(index=self.index, id=image_id, _source_includes=["product_id", "image_vector"])
        except NotFoundError:
            return None
        src = doc["_source"]
        if not src.get("image_vector"):
            return None
        return IndexedImage(image_id=image_id, product_id=src["product_id"], image_vector=src["image_vector"])

