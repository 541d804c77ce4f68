"""A real OpenSearch node: start, k-NN (Lucene HNSW) with a filter inside the knn clause, collapse, stop.

A node that cannot be installed or started fails this test; nothing here skips.
"""

from __future__ import annotations

import numpy as np
from opensearchpy import OpenSearch, helpers

from imgsearch_pipeline import config
from imgsearch_pipeline.stack.opensearch import OpenSearchNode, ensure_installed
from imgsearch_pipeline.stack.process import pid_alive

DIM = 8
PRODUCTS = 10
IMAGES_PER_PRODUCT = 5
INDEX = "node-smoke"


def _corpus() -> list[dict]:
    rng = np.random.default_rng(7)
    bases = rng.normal(size=(PRODUCTS, DIM))
    docs = []
    for p in range(PRODUCTS):
        for i in range(IMAGES_PER_PRODUCT):
            vec = bases[p] + 0.15 * rng.normal(size=DIM)
            docs.append({
                "_id": f"p{p}-{i}",
                "product_id": f"p{p}",
                "color": "blue" if p % 2 else "red",
                "title": f"product {p} image {i} " + ("running shoes" if p == 3 else "plain shirt"),
                "vec": [float(x) for x in vec],
            })
    return docs


def _cosine_ranking(docs: list[dict], query: np.ndarray) -> list[str]:
    def cos(v):
        v = np.asarray(v)
        return float(v @ query / (np.linalg.norm(v) * np.linalg.norm(query)))
    return [d["_id"] for d in sorted(docs, key=lambda d: cos(d["vec"]), reverse=True)]


def test_node_knn_filter_collapse_and_stop(tmp_path):
    node = OpenSearchNode(home=ensure_installed(config.cache_dir()), state_dir=tmp_path / "opensearch")
    url = node.start()
    pid = node.pid()
    try:
        assert url.startswith("http://127.0.0.1:")
        assert pid is not None and node.is_running()
        # Another handle on the same state folder (as another process would have) sees and reuses it.
        other = OpenSearchNode(home=None, state_dir=tmp_path / "opensearch")
        assert other.is_running() and other.url == url
        assert other.start() == url and other.pid() == pid

        client = OpenSearch(url, timeout=30)
        plugins = {p["component"] for p in client.cat.plugins(format="json")}
        assert "opensearch-knn" in plugins

        client.indices.create(index=INDEX, body={
            "settings": {"index": {"knn": True, "number_of_shards": 1, "number_of_replicas": 0}},
            "mappings": {"properties": {
                "vec": {"type": "knn_vector", "dimension": DIM,
                        "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"}},
                "product_id": {"type": "keyword"},
                "color": {"type": "keyword"},
                "title": {"type": "text", "analyzer": "english"},
            }},
        })
        docs = _corpus()
        ok, errors = helpers.bulk(client, ({"_index": INDEX, **d} for d in docs), refresh="wait_for")
        assert ok == len(docs) and not errors
        assert client.count(index=INDEX)["count"] == len(docs)

        by_id = {d["_id"]: d for d in docs}
        # Query near a red product, restricted to blue ones: the filter sits inside the knn clause.
        query = np.mean([d["vec"] for d in docs if d["product_id"] == "p2"], axis=0)
        blue = [d for d in docs if d["color"] == "blue"]
        expected = _cosine_ranking(blue, query)

        knn = {"vec": {"vector": [float(x) for x in query], "k": 10,
                       "filter": {"term": {"color": "blue"}}}}
        res = client.search(index=INDEX, body={"size": 10, "query": {"knn": knn}})
        ids = [h["_id"] for h in res["hits"]["hits"]]
        assert len(ids) == 10
        assert all(by_id[i]["color"] == "blue" for i in ids)
        assert ids[0] == expected[0]
        assert set(ids) == set(expected[:10])
        scores = [h["_score"] for h in res["hits"]["hits"]]
        assert scores == sorted(scores, reverse=True) and all(0.0 < s <= 1.0 for s in scores)

        # Collapse on the keyword product id: one hit per product, in order of its best image.
        knn["vec"]["k"] = 25  # over-sample before collapsing
        res = client.search(index=INDEX, body={"size": 5, "query": {"knn": knn},
                                               "collapse": {"field": "product_id"}})
        products = [h["fields"]["product_id"][0] for h in res["hits"]["hits"]]
        expected_products = list(dict.fromkeys(by_id[i]["product_id"] for i in expected))
        assert products == expected_products[:5]
        assert len(set(products)) == len(products) == 5

        # The english analyzer (analysis-common module) stems "run" to match "running".
        res = client.search(index=INDEX, body={"size": 10, "query": {"match": {"title": "run"}}})
        assert {by_id[h["_id"]]["product_id"] for h in res["hits"]["hits"]} == {"p3"}
        assert res["hits"]["total"]["value"] == IMAGES_PER_PRODUCT
    finally:
        node.stop()
    assert not node.is_running()
    assert not pid_alive(pid)
    assert not (tmp_path / "opensearch" / "opensearch.pid").exists()
