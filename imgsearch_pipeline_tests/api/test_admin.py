"""Admin endpoints (reindex, failure replay) behind the API key, and no credential in any error or log line."""

from __future__ import annotations

import logging

import pytest
from dagster import instance_for_test
from fastapi.testclient import TestClient
from pydantic import SecretStr

from imgsearch_pipeline.api.app import create_app
from imgsearch_pipeline.api.security import API_KEY_HEADER, ApiSecurity
from imgsearch_pipeline.definitions import build_resources
from imgsearch_pipeline.stack.process import free_port
from imgsearch_pipeline.storage import opensearch as osx
from imgsearch_pipeline.storage import postgres as pg
from imgsearch_pipeline_tests.harness import Pipeline

ADMIN_KEY = "admin-key-9f8e7d6c5b4a"
ADMIN = {API_KEY_HEADER: ADMIN_KEY}
ADMIN_PATHS = ("/admin/reindex", "/admin/failures/replay")


@pytest.fixture(scope="module")
def api(new_settings):
    with instance_for_test() as instance:
        pipeline = Pipeline(new_settings(), instance, n_products=6, seed=13)
        # A PDF named .jpg beside a product's photos: a permanent failure in the dead-letter table.
        folder = pipeline.products[0].images[0].key.rsplit("/", 1)[0]
        bad_key = f"{folder}/9.jpg"
        pipeline.res["images"].client().put_object(Bucket=pipeline.settings.s3_bucket, Key=bad_key,
                                                   Body=b"%PDF-1.4 not a photo")
        pipeline.run()
        with TestClient(create_app(lambda: pipeline.res, ApiSecurity(api_key=ADMIN_KEY))) as client:
            yield client, pipeline, bad_key


def test_admin_endpoints_refuse_without_the_key(api):
    client, pipeline, _ = api
    target = osx.alias_target(pipeline.res["opensearch"].client(), pipeline.res["opensearch"].alias)
    for path in ADMIN_PATHS:
        for headers in ({}, {API_KEY_HEADER: "wrong"}, {API_KEY_HEADER: ADMIN_KEY[:-1]}, {"X-Api-Key ": ADMIN_KEY}):
            r = client.post(path, headers=headers)
            assert r.status_code == 401 and ADMIN_KEY not in r.text, (path, headers, r.text)
        assert client.get(path, headers=ADMIN).status_code == 405  # read-only verbs do not reach them
    assert osx.alias_target(pipeline.res["opensearch"].client(), pipeline.res["opensearch"].alias) == target
    with TestClient(create_app(lambda: pipeline.res, ApiSecurity())) as disabled:
        for path in ADMIN_PATHS:
            r = disabled.post(path, headers=ADMIN)
            assert r.status_code == 403 and "IMGSEARCH_API_KEY" in r.json()["detail"]


def test_reindex_rebuilds_the_index_from_postgres(api):
    client, pipeline, _ = api
    os_client, alias = pipeline.res["opensearch"].client(), pipeline.res["opensearch"].alias
    old = osx.alias_target(os_client, alias)
    lost = client.get("/search", params={"q": ""}).json()["hits"][0]["image_id"]
    os_client.delete(index=old, id=str(lost), refresh=True)  # the index drifted from Postgres
    with pipeline.db() as conn:
        expected = pg.count_index_rows(conn, pipeline.res["analysis"].get().model_version)

    r = client.post("/admin/reindex", headers=ADMIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["alias"] == alias and body["index"] != old and body["documents"] == expected
    assert osx.alias_target(os_client, alias) == body["index"] and not os_client.indices.exists(index=old)
    assert os_client.exists(index=alias, id=str(lost))
    assert client.get("/search", params={"q": "dress"}).status_code == 200


def test_replay_releases_failures_for_the_next_run(api):
    client, pipeline, bad_key = api
    partition = pipeline.res["images"].partition_of(bad_key)
    version = pipeline.res["analysis"].get().model_version

    def pending() -> set[str]:
        with pipeline.db() as conn:
            return {r["s3_key"] for r in pg.images_to_analyse(conn, partition, version)}

    with pipeline.db() as conn:
        (failure,) = pg.list_failures(conn)
    assert failure["s3_key"] == bad_key and not failure["retryable"] and bad_key not in pending()

    other = client.post("/admin/failures/replay", params={"partition": "catalog/none/here/"}, headers=ADMIN)
    assert other.status_code == 200 and other.json()["partitions"] == [] and bad_key not in pending()
    r = client.post("/admin/failures/replay", headers=ADMIN)
    assert r.status_code == 200 and r.json()["partitions"] == [partition], r.text
    assert bad_key in pending()  # the next run of the partition retries it

    pipeline.run([partition])
    with pipeline.db() as conn:
        (again,) = pg.list_failures(conn)
    assert again["attempts"] == failure["attempts"] + 1 and not again["retryable"]  # retried, failed again
    assert client.post("/admin/failures/replay", headers=ADMIN).json()["partitions"] == [partition]


def test_no_credential_in_error_bodies_or_logs(new_settings, monkeypatch, caplog):
    """Every server unreachable, each configured with a secret: errors name the service, never a secret."""
    pg_password, os_password, openai_key = "pg-Secret-pw-4711", "os-Secret-pw-0815", "sk-test-Secret-1234567890"
    monkeypatch.setenv("OPENAI_API_KEY", openai_key)
    closed = free_port()
    settings = new_settings().model_copy(update={
        "postgres_dsn": f"postgresql://imgsearch:{pg_password}@127.0.0.1:{closed}/catalog",
        "opensearch_url": f"http://127.0.0.1:{closed}", "opensearch_user": "admin",
        "opensearch_password": SecretStr(os_password), "query_parser": "llm", "provider": "openai",
        "provider_options": {"base_url": f"http://127.0.0.1:{closed}/v1", "model": "vision",
                             "api_key_env": "OPENAI_API_KEY"}})
    secrets = (pg_password, os_password, openai_key, ADMIN_KEY)
    caplog.set_level(logging.DEBUG)
    for backend in ("opensearch", "postgres"):
        resources = build_resources(settings.model_copy(update={"search_backend": backend}))
        app = create_app(lambda resources=resources: resources, ApiSecurity(api_key=ADMIN_KEY))
        with TestClient(app, raise_server_exceptions=False) as client:
            responses = [client.get("/search", params={"q": "red dress"}), client.get("/products"),
                         client.get("/products/p1"), client.get("/images/1"),
                         client.get("/similar", params={"image_id": 1}),
                         client.post("/admin/reindex", headers=ADMIN),
                         client.post("/admin/failures/replay", headers=ADMIN),
                         client.put("/products/p1", json={"product_id": "p1"}, headers=ADMIN)]
            for r in responses:
                assert r.status_code == 503, (r.request.url, r.status_code, r.text)
                assert r.headers["Retry-After"] and ("PostgreSQL" in r.text or "OpenSearch" in r.text)
                assert not any(s in r.text or s in str(r.headers) for s in secrets), r.text
                assert "127.0.0.1" not in r.text and str(closed) not in r.text
    formatter = logging.Formatter()
    logged = "\n".join(formatter.format(rec) for rec in caplog.records)  # messages with their tracebacks
    assert caplog.records and not any(s in logged for s in secrets)


def test_browsers_elsewhere_cannot_call_admin_endpoints():
    """CORS allows the configured origin to GET (search) only: a preflight for an admin POST is refused."""
    security = ApiSecurity(api_key=ADMIN_KEY, cors_origins=["https://shop.example"])
    with TestClient(create_app(lambda: {}, security)) as client:
        for path in (*ADMIN_PATHS, "/products"):
            preflight = client.options(path, headers={"Origin": "https://shop.example",
                                                      "Access-Control-Request-Method": "POST",
                                                      "Access-Control-Request-Headers": API_KEY_HEADER})
            assert preflight.status_code == 400 and "POST" not in preflight.headers.get(
                "access-control-allow-methods", ""), path
        search = client.options("/search", headers={"Origin": "https://shop.example",
                                                     "Access-Control-Request-Method": "GET"})
        assert search.status_code == 200 and search.headers["access-control-allow-origin"] == "https://shop.example"
