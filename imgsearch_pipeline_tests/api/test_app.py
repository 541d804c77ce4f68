"""The HTTP API over real servers: search, plan, thumbnails, product CRUD."""

from __future__ import annotations

import pytest
from dagster import instance_for_test
from fastapi.testclient import TestClient
from PIL import Image

from imgsearch_pipeline.api.app import create_app
from imgsearch_pipeline.api.security import API_KEY_HEADER, ApiSecurity
from imgsearch_pipeline.search.parser import MAX_QUERY_CHARS
from imgsearch_pipeline_tests.harness import Pipeline

ADMIN_KEY = "test-admin-key-0123456789"
ADMIN = {API_KEY_HEADER: ADMIN_KEY}


@pytest.fixture(scope="module")
def api(new_settings):
    with instance_for_test() as instance:
        pipeline = Pipeline(new_settings(), instance, n_products=16, seed=11)
        pipeline.run()
        with TestClient(create_app(lambda: pipeline.res, ApiSecurity(api_key=ADMIN_KEY))) as client:
            yield client, pipeline


def test_search_returns_plan_hits_and_attributes(api):
    client, _ = api
    r = client.get("/search", params={"q": "green t shirt with no prints"})
    assert r.status_code == 200
    body = r.json()
    assert body["plan"]["has_print"] is False
    assert {c["field"]: c["values"] for c in body["plan"]["filters"]}["category"] == ["t-shirt"]
    for hit in body["hits"]:
        assert hit["attributes"]["category"] == "t-shirt" and hit["attributes"]["has_print"] is False
        assert set(hit["attributes"]["colors"]) & {"green", "lime", "olive"}
        assert {"product_id", "image_id", "s3_key", "score"} <= set(hit)


def test_parse_endpoint_and_limits(api):
    client, _ = api
    assert client.get("/parse", params={"q": "not black"}).json()["exclude"][0]["values"] == ["black"]
    assert client.get("/search", params={"q": "x" * (MAX_QUERY_CHARS + 1)}).status_code == 422
    assert client.get("/search", params={"q": "shirt", "size": 0}).status_code == 422


def test_thumbnail(api):
    client, _ = api
    hit = client.get("/search", params={"q": "dress"}).json()["hits"][0]
    r = client.get(f"/images/{hit['image_id']}", params={"w": 64})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    import io

    assert max(Image.open(io.BytesIO(r.content)).size) == 64
    assert client.get("/images/999999999").status_code == 404


def test_facets_count_products_of_the_filtered_set(api):
    client, _ = api
    body = client.get("/search", params={"q": "t-shirt", "size": 100}).json()
    facets = {f["value"]: f["products"] for f in body["facets"]["category"]}
    assert facets == {"t-shirt": body["total_products"]} and body["total_products"] == len(body["hits"]) > 0
    colours = {f["value"]: f["products"] for f in body["facets"]["color"]}
    for colour, n in colours.items():
        assert n == len({h["product_id"] for h in body["hits"] if colour in h["attributes"]["colors"]})


def test_baseline_modes_ignore_the_filters(api):
    client, _ = api
    hybrid = client.get("/search", params={"q": "green t shirt with no prints", "size": 100}).json()
    vector = client.get("/search", params={"q": "green t shirt with no prints", "size": 100, "mode": "vector"}).json()
    assert vector["mode"] == "vector" and len(vector["hits"]) > len(hybrid["hits"])
    assert client.get("/search", params={"q": "shirt", "mode": "image"}).status_code == 422


def test_more_like_this_by_image_id_and_by_upload(api):
    client, pipeline = api
    source = client.get("/search", params={"q": "dress"}).json()["hits"][0]
    similar = client.get("/similar", params={"image_id": source["image_id"]}).json()
    assert similar["mode"] == "image" and similar["hits"]
    assert source["product_id"] not in {h["product_id"] for h in similar["hits"]}
    filtered = client.get("/similar", params={"image_id": source["image_id"], "q": "not red"}).json()
    assert all("red" not in h["attributes"]["colors"] for h in filtered["hits"])
    photo = pipeline.res["images"].read(source["s3_key"])
    uploaded = client.post("/similar", files={"image": ("p.jpg", photo, "image/jpeg")}).json()
    assert uploaded["hits"][0]["product_id"] == source["product_id"]  # the same photo is its own best match
    assert client.get("/similar", params={"image_id": 999999999}).status_code == 404
    bad = client.post("/similar", files={"image": ("p.jpg", b"%PDF-1.4", "application/pdf")})
    assert bad.status_code == 422 and "not a usable image" in bad.json()["detail"]


def test_search_page_is_served(api):
    client, _ = api
    r = client.get("/")
    assert r.status_code == 200 and "<title>imgsearch</title>" in r.text


def test_product_crud_and_delete_removes_from_index(api):
    client, pipeline = api
    created = client.post("/products", json={"product_id": "new-1", "name": "Plain tee", "brand": "Acme"},
                          headers=ADMIN)
    assert created.status_code == 201 and created.json()["name"] == "Plain tee"
    assert client.post("/products", json={"product_id": "new-1"}, headers=ADMIN).status_code == 409
    assert client.post("/products", json={"product_id": ""}, headers=ADMIN).status_code == 422

    target = pipeline.products[0]
    updated = client.put(f"/products/{target.product_id}",
                         json={"product_id": target.product_id, "name": "Renamed thing", "brand": "Zeta"},
                         headers=ADMIN)
    assert updated.status_code == 200 and updated.json()["name"] == "Renamed thing"
    image_ids = [i["image_id"] for i in updated.json()["images"]]
    os_client, alias = pipeline.res["opensearch"].client(), pipeline.res["opensearch"].alias
    assert os_client.get(index=alias, id=str(image_ids[0]))["_source"]["product_name"] == "Renamed thing"

    before = pipeline.doc_count()
    assert client.delete(f"/products/{target.product_id}", headers=ADMIN).status_code == 204
    assert client.get(f"/products/{target.product_id}").status_code == 404
    assert pipeline.doc_count() == before - len(image_ids)
    assert all(not os_client.exists(index=alias, id=str(i)) for i in image_ids)
    hits = client.get("/search", params={"q": target.category, "size": 100}).json()["hits"]
    assert target.product_id not in {h["product_id"] for h in hits}
    assert client.delete(f"/products/{target.product_id}", headers=ADMIN).status_code == 404


def test_unreachable_servers_give_a_clear_503(new_settings):
    from imgsearch_pipeline.definitions import build_resources
    from imgsearch_pipeline.stack.process import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = new_settings().model_copy(update={"opensearch_url": dead})
    with TestClient(create_app(lambda: build_resources(settings))) as client:
        r = client.get("/search", params={"q": "red dress"})
        assert r.status_code == 503 and "OpenSearch" in r.json()["detail"]
        assert "127.0.0.1" not in r.text
    settings = new_settings().model_copy(update={"postgres_dsn": f"postgresql://postgres@127.0.0.1:{free_port()}/x"})
    with TestClient(create_app(lambda: build_resources(settings))) as client:
        r = client.get("/products/anything")
        assert r.status_code == 503 and "PostgreSQL" in r.json()["detail"]


def test_a_constraint_on_a_field_nobody_has_ranks_instead_of_emptying_the_page(api):
    client, _ = api
    body = client.get("/search", params={"q": "long sleeve t-shirt", "size": 100}).json()
    assert [c["field"] for c in body["plan"]["filters"]] == ["category"]  # the builtin provider has no sleeves
    assert "long sleeve" in body["plan"]["residual"]
    assert any("sleeve length" in w and "ranks results instead of filtering" in w for w in body["plan"]["warnings"])
    assert body["hits"] and all(h["attributes"]["category"] == "t-shirt" for h in body["hits"])
    kept = client.get("/search", params={"q": "women's dress", "size": 100}).json()  # the feed has departments
    assert {c["field"] for c in kept["plan"]["filters"]} == {"category", "department"}


def test_changing_the_catalogue_needs_the_admin_key(api):
    client, pipeline = api
    target = pipeline.products[1].product_id
    body = {"product_id": target, "name": "hijacked"}
    for headers in ({}, {API_KEY_HEADER: "wrong"}, {API_KEY_HEADER: ADMIN_KEY + "x"}):
        assert client.post("/products", json={"product_id": "x-1"}, headers=headers).status_code == 401
        assert client.put(f"/products/{target}", json=body, headers=headers).status_code == 401
        refused = client.delete(f"/products/{target}", headers=headers)
        assert refused.status_code == 401 and ADMIN_KEY not in refused.text
    assert client.get(f"/products/{target}").json()["name"] != "hijacked"  # reading stays open
    assert client.get("/search", params={"q": "shirt"}).status_code == 200


def test_without_a_configured_key_admin_endpoints_are_disabled():
    with TestClient(create_app(lambda: {}, ApiSecurity())) as client:
        r = client.post("/products", json={"product_id": "x"}, headers={API_KEY_HEADER: "anything"})
        assert r.status_code == 403 and "IMGSEARCH_API_KEY" in r.json()["detail"]


def test_request_size_rate_and_cors_limits():
    security = ApiSecurity(max_request_bytes=2048, requests_per_minute=60, cors_origins=["https://shop.example"])
    with TestClient(create_app(lambda: {}, security)) as client:
        big = client.post("/parse", content=b"x" * 4096, headers={"content-type": "application/json"})
        assert big.status_code == 413
        preflight = client.options("/parse", headers={"Origin": "https://shop.example",
                                                      "Access-Control-Request-Method": "GET"})
        assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
        other = client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        statuses = [client.get("/healthz").status_code for _ in range(20)]
        assert statuses.count(429) > 0 and statuses[0] == 200  # a burst passes, then the client is paced
        limited = client.get("/healthz")
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
